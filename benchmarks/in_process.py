"""Training-step time of several ``train_step.py`` entries in one process, taking turns.

Where two entries differ by a few percent, the run-to-run spread of ``train_step.py`` (each entry
in its own process, medians) hides the difference. Here the nets live in one process and take
turns, round after round (a settling step, then a timed step each), so a drift in the machine's
load hits them alike; the minimum over rounds is reported, with each entry's ratio to the first.

Usage::

    python benchmarks/in_process.py "asa-snn (none)" "asa-snn (asa2)" "asa-snn (asa2, Y whole)" \\
        --rounds 8 --threads 2

Set ``THP_MEM_ALLOC_ENABLE=1`` (as the ``asa-snn`` command does) to match ``train_step.py``'s default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def step_seconds(net, x, target) -> float:
    """Wall seconds of one training step (forward, cross-entropy, backward) of a ``nets.Net``."""
    import torch.nn.functional as F

    net.module.zero_grad(set_to_none=True)
    start = time.perf_counter()
    F.cross_entropy(net.forward(x), target).backward()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("entries", nargs="+", help="entry names of benchmarks/nets.py BUILDERS")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    sys.path.insert(0, str(HERE))
    import nets
    from train_step import SHAPE

    unknown = [name for name in args.entries if name not in nets.BUILDERS]
    if unknown:
        parser.error(f"unknown entries {unknown}; known: {sorted(nets.BUILDERS)}")
    torch.set_num_threads(args.threads)
    nets.TIMESTEPS = SHAPE[0]
    built = {}
    for name in args.entries:
        torch.manual_seed(0)
        built[name] = nets.BUILDERS[name]()
        built[name].module.train()
    x = (torch.rand(SHAPE) < 0.2).float()
    target = torch.randint(0, 11, (SHAPE[1],))
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(args.rounds):
        for name, net in built.items():
            step_seconds(net, x, target)
            times[name].append(step_seconds(net, x, target))
    first = min(times[args.entries[0]])
    for name, values in times.items():
        print(f"{name:28s} min {min(values):.3f} s   x first {min(values) / first:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
