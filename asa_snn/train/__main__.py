"""``python -m asa_snn.train CONFIG OUT_DIR [section.key=value ...] [--resume] [--no-progress]``.

CONFIG is a TOML / YAML file or the name of a shipped recipe (``nmnist_small``).

Also the entry point for multi-process runs, on one machine or several (NCCL on CUDA, gloo on the
CPU: :mod:`asa_snn.train.distributed`)::

    torchrun --standalone --nproc_per_node 2 -m asa_snn.train CONFIG OUT train.device=cuda
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400
        --rdzv-id RUN -m asa_snn.train CONFIG OUT      (the same line on every node)

An :class:`~asa_snn.errors.AsaSnnError` becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from asa_snn.errors import AsaSnnError
from asa_snn.train.config import load_config, resolve_config_path
from asa_snn.train.trainer import train


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, train, print the test accuracy; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m asa_snn.train", description="Train a spiking network.")
    parser.add_argument("config", help="TOML or YAML training config, or a shipped recipe name")
    parser.add_argument("out_dir", help="output folder (log.jsonl, last/best.safetensors, result.json)")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.epochs=3")
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.safetensors")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        result = train(
            load_config(resolve_config_path(args.config), args.overrides),
            args.out_dir,
            args.resume,
            not args.no_progress,
        )
    except AsaSnnError as exc:
        print(f"error: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    best = f"best epoch {result.best_epoch} (val {result.best_val_accuracy:.4f})"
    print(f"{best}, test accuracy {result.test_accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
