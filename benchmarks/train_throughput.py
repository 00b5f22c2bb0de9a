"""Training-epoch throughput (recordings per second) with and without the on-disk frame cache.

The training part of the shared N-MNIST files (``../shared/data/nmnist``, recipe ``nmnist_small``:
speck_net, T = 10 frames of 30 ms cropped to 32 x 32, batch 16) is trained for one epoch in each of
four modes, with the same model, optimiser and loop as :mod:`asa_snn.train.trainer` (one Adam step
per batch, batches from a DataLoader over the part):

* ``no cache``: every frame binned from its ``.bs2`` file in every epoch (the trainer without
  ``data.cache_dir``), no workers;
* ``cache``: frames read memory-mapped from a cache filled beforehand (``asa-snn cache``), no workers;
* ``cache + workers``: the same with ``--workers`` DataLoader processes (persistent);
* ``in memory``: the frames already held as tensors in memory (the reference: what a data pipeline
  costing nothing would give).

The modes run their epochs side by side, batch by batch in turns (the order rotating each batch):
a mode's epoch time is the sum of its batches' loading and step times (``time.perf_counter``), so
drifts in the machine's load (it is shared) hit every mode alike. The first such epoch is an
untimed warm-up (worker start, page cache), then ``--rounds`` epochs are timed. One model is
trained by all modes' steps (the cost of a step does not depend on its weights). Workers prefetch
while the other modes step, as they prefetch during the training step in a real run. Reported: the
median epoch time, recordings per second, and each mode's epoch time over the in-memory one (the
goal: ``cache`` at most 1.1x).

Usage::

    python benchmarks/train_throughput.py                 # writes benchmarks/results/train_throughput.json
    python benchmarks/train_throughput.py --threads 1 --out benchmarks/results/train_throughput_1thread.json
    python benchmarks/train_throughput.py --samples 200 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from asa_snn.files import write_json  # noqa: E402
from asa_snn.models.registry import build_model  # noqa: E402
from asa_snn.train.config import load_config  # noqa: E402
from asa_snn.train.data import build_data, fill_cache  # noqa: E402
from asa_snn.train.metrics import LOSS_FUNCTIONS, to_time_major  # noqa: E402

RESULTS = HERE / "results" / "train_throughput.json"
NMNIST = REPO.parent / "shared" / "data" / "nmnist"
RECIPE = REPO / "asa_snn" / "configs" / "nmnist_small.toml"
MODES = ("no cache", "cache", "cache + workers", "in memory")


class InMemory(Dataset):
    """The frames of a part, computed once and held as tensors."""

    def __init__(self, part: Dataset) -> None:
        self.items = [part[i] for i in range(len(part))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.items[index]


def _loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )


def _step(batch: tuple[torch.Tensor, torch.Tensor], model, optimizer, loss_fn) -> None:
    """The trainer's step: forward, loss, backward, Adam."""
    frames, labels = batch
    optimizer.zero_grad()
    loss_fn(model(to_time_major(frames)), labels).backward()
    optimizer.step()


def _interleaved_epoch(
    loaders: dict[str, DataLoader], model, optimizer, loss_fn, shift: int
) -> dict[str, dict[str, float]]:
    """One epoch of every mode, batch by batch in turns (the order rotating by one each batch,
    starting ``shift`` along); returns each mode's ``load`` seconds (making the iterator and waiting
    for each batch) and ``step`` seconds (the training steps on its batches)."""
    model.train()
    seconds = {mode: {"load": 0.0, "step": 0.0} for mode in loaders}
    iterators = {}
    for mode, loader in loaders.items():
        started = time.perf_counter()
        iterators[mode] = iter(loader)
        seconds[mode]["load"] += time.perf_counter() - started
    active, turn = list(loaders), shift
    while active:
        turn += 1
        for mode in active[turn % len(active) :] + active[: turn % len(active)]:
            started = time.perf_counter()
            batch = next(iterators[mode], None)
            loaded = time.perf_counter()
            seconds[mode]["load"] += loaded - started
            if batch is None:
                active.remove(mode)
                continue
            _step(batch, model, optimizer, loss_fn)
            seconds[mode]["step"] += time.perf_counter() - loaded
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Run the modes in turns and write the JSON summary; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="N-MNIST files used (data.max_samples)")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per mode")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader processes of 'cache + workers'")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not (NMNIST / "train" / "labels.txt").is_file():
        print(f"the shared N-MNIST files are absent ({NMNIST}); nothing to measure", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="asa-snn-frame-cache-") as cache_dir:
        base = [f"data.root={json.dumps(str(NMNIST))}", f"data.max_samples={args.samples}"]
        cached_config = load_config(RECIPE, [*base, f"data.cache_dir={json.dumps(cache_dir)}"])
        plain = build_data(load_config(RECIPE, base))
        cached = build_data(cached_config)
        started = time.perf_counter()
        fill_cache(cached)
        fill_seconds = time.perf_counter() - started
        settings = cached_config.train
        datasets = {
            "no cache": (plain.train, 0),
            "cache": (cached.train, 0),
            "cache + workers": (cached.train, args.workers),
            "in memory": (InMemory(plain.train), 0),
        }
        loaders = {
            mode: _loader(data, settings.batch_size, workers) for mode, (data, workers) in datasets.items()
        }
        torch.manual_seed(settings.seed)
        model = build_model(cached_config.model)
        optimizer = torch.optim.Adam(model.parameters(), lr=cached_config.optim.lr)
        loss_fn = LOSS_FUNCTIONS[settings.loss]()
        _interleaved_epoch(loaders, model, optimizer, loss_fn, 0)  # warm-up
        epochs = []
        for round_index in range(args.rounds):
            epoch = _interleaved_epoch(loaders, model, optimizer, loss_fn, round_index)
            epochs.append(epoch)
            shown = ", ".join(f"{m} {epoch[m]['load']:.2f} + {epoch[m]['step']:.2f} s" for m in MODES)
            print(f"epoch {round_index + 1} (load + step): {shown}", flush=True)
    recordings = len(plain.train)
    rows = {}
    for mode in MODES:
        wall = [e[mode]["load"] + e[mode]["step"] for e in epochs]
        # the steps are the same work in every mode: their time, common to all, is the median
        # over the modes of each epoch's step seconds, so the machine's noise in them cancels
        common = [statistics.median(e[m]["step"] for m in MODES) + e[mode]["load"] for e in epochs]
        rows[mode] = {
            "load_seconds": [e[mode]["load"] for e in epochs],
            "step_seconds": [e[mode]["step"] for e in epochs],
            "median_epoch_seconds": statistics.median(wall),
            "recordings_per_second": recordings / statistics.median(wall),
            "median_epoch_seconds_common_step": statistics.median(common),
        }
    for row in rows.values():
        row["epoch_over_in_memory"] = row["median_epoch_seconds"] / rows["in memory"]["median_epoch_seconds"]
        row["epoch_over_in_memory_common_step"] = (
            row["median_epoch_seconds_common_step"] / rows["in memory"]["median_epoch_seconds_common_step"]
        )
    summary = {
        "recordings_per_epoch": recordings,
        "batch_size": settings.batch_size,
        "cache_fill_seconds": fill_seconds,
        "workers": args.workers,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "modes": rows,
    }
    write_json(summary, args.out)
    print(
        f"{'mode':16s} {'load s':>7s} {'s/epoch':>8s} {'rec/s':>7s} {'x in-memory':>12s} "
        f"{'x (common step)':>16s}"
    )
    for mode, row in rows.items():
        print(
            f"{mode:16s} {statistics.median(row['load_seconds']):7.2f} {row['median_epoch_seconds']:8.2f} "
            f"{row['recordings_per_second']:7.1f} {row['epoch_over_in_memory']:12.3f} "
            f"{row['epoch_over_in_memory_common_step']:16.3f}"
        )
    print(f"cache filled in {fill_seconds:.1f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
