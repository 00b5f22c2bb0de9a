"""Training-step speed and memory of asa-snn against SpikingJelly, snnTorch, Norse and a ReLU floor.

One step = forward of the paper's 3-layer net (arch A, see ``nets.py``) on x [T=16, B=8, 2, 32, 32],
cross-entropy on the [B, 11] scores, ``loss.backward()`` (no optimizer). Each entry runs in its own
process with ``torch.set_num_threads(2)``; after warm-up steps the entries take turns (a few timed
steps each per round, the order rotating), so drifts in the machine's load hit all of them alike.
Each turn starts with an untimed settling step: the first step after another process has run
re-faults the memory that process took over (with huge pages, after compacting it), which cost
batched entries up to 0.8 s once per turn and made their medians depend on the turn length.
Every worker gets the same allocator setting: by default ``THP_MEM_ALLOC_ENABLE=1`` (tensors of
2 MiB and more on transparent huge pages, as the ``asa-snn`` command sets it), or PyTorch's plain
allocator with ``--allocator default``. Reported: the median
wall-clock seconds per step (``time.perf_counter``) and the median process CPU seconds per step.
Peak memory: ``ru_maxrss`` of the process after all steps minus its resident set size
(``/proc/self/statm``) just before the first step, i.e. the extra memory the steps needed at their
peak (activations kept for backward, gradients, allocator growth). Entries whose library is not
installed are skipped with a note.

Usage::

    python benchmarks/train_step.py            # full run, writes benchmarks/results/train_step.json
    python benchmarks/train_step.py --allocator default \
        --out benchmarks/results/train_step_default_allocator.json
    python benchmarks/train_step.py --quick    # smoke run, fewer steps, under a minute
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "train_step.json"
SHAPE = (16, 8, 2, 32, 32)
THREADS = 2
FLOOR_LAYOUTS = ("relu (batched)", "relu (step by step)", "relu (batched, NHWC)", "relu (step, NHWC)")
PEERS = ("spikingjelly", "snntorch", "norse")
OURS = (
    "asa-snn (none)",
    "asa-snn (asa2)",
    "asa-snn (asa1)",
    "asa-snn (none, NCHW)",
    "asa-snn (none, unfused)",
    "asa-snn (asa2, reference)",
)
ON_REQUEST = ("asa-snn (none, NCHW)", "asa-snn (none, unfused)", "asa-snn (asa2, reference)")
"""Entries run only when named with ``--only`` (what a design choice gains, not a comparison)."""


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Worker:
    """One entry's net, input and step, kept in its own process and driven through stdin.

    Protocol (one line each way): ``steps N`` -> JSON ``{"times_s": [...], "cpu_s": [...]}``;
    ``memory`` -> JSON ``{"peak_increase_bytes": ..., "rss_before_bytes": ...}``.
    """

    def __init__(self, name: str) -> None:
        import torch

        sys.path.insert(0, str(REPO))
        from nets import BUILDERS

        torch.set_num_threads(THREADS)
        torch.manual_seed(0)
        self.net = BUILDERS[name]()
        self.net.module.train()
        self.x = (torch.rand(SHAPE) < 0.2).float()
        self.target = torch.randint(0, 11, (SHAPE[1],))
        self.rss_before = _rss_bytes()

    def step(self) -> tuple[float, float]:
        """One training step; returns (wall seconds, process CPU seconds)."""
        import torch.nn.functional as F

        self.net.module.zero_grad(set_to_none=True)
        wall, cpu = time.perf_counter(), time.process_time()
        F.cross_entropy(self.net.forward(self.x), self.target).backward()
        return time.perf_counter() - wall, time.process_time() - cpu

    def serve(self) -> None:
        """Answer commands on stdin until it closes."""
        for line in sys.stdin:
            command = line.split()
            if command[0] == "steps":
                walls, cpus = zip(*(self.step() for _ in range(int(command[1]))), strict=True)
                answer = {"times_s": list(walls), "cpu_s": list(cpus)}
            else:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                increase = max(0, peak - self.rss_before)
                answer = {"peak_increase_bytes": increase, "rss_before_bytes": self.rss_before}
            print(json.dumps(answer), flush=True)


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    return names[0] if names else platform.processor()


def _installed(name: str) -> str | None:
    """The version of the package entry ``name`` needs, '' when it needs none, None when missing."""
    from nets import REQUIRES

    package = REQUIRES.get(name)
    if package is None:
        return ""
    if importlib.util.find_spec(package) is None:
        return None
    return importlib.metadata.version(package)


def _ask(process: subprocess.Popen, name: str, command: str) -> dict:
    process.stdin.write(command + "\n")
    process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"worker {name!r} died: {process.stderr.read()[-3000:]}")
    return json.loads(line)


def worker_environment(allocator: str) -> dict[str, str]:
    """The environment of every worker: ``thp`` sets ``THP_MEM_ALLOC_ENABLE=1`` (what the
    ``asa-snn`` command does before importing torch), ``default`` removes it."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if allocator == "thp":
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    return env


def measure(
    names: list[str], rounds: int, warmup: int, steps: int, allocator: str, settle: int = 1
) -> dict[str, dict]:
    """Time every entry in its own process, the entries taking turns.

    Each process builds its net and runs ``warmup`` steps; then ``rounds`` times, each entry in
    turn runs ``settle`` untimed steps (kept as ``settle_s``), then ``steps`` timed steps while the
    others wait, so slow drifts of the machine's load hit all entries alike. The order of the
    turns rotates by one entry each round, so no entry always follows the same neighbour (whose
    memory use changes what the kernel has at hand).
    Every process gets the same allocator setting (:func:`worker_environment`). Peak memory is
    read from each process at the end.
    """
    script = str(Path(__file__).resolve())
    processes = {
        n: subprocess.Popen(
            [sys.executable, script, "--worker", n],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_environment(allocator),
        )
        for n in names
    }
    results: dict[str, dict] = {n: {"times_s": [], "cpu_s": [], "settle_s": []} for n in names}
    try:
        for name in names:
            print(f"  warm-up: {name}", flush=True)
            _ask(processes[name], name, f"steps {warmup}")
        for round_index in range(rounds):
            print(f"  round {round_index + 1}/{rounds}", flush=True)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                if settle:
                    results[name]["settle_s"] += _ask(processes[name], name, f"steps {settle}")["times_s"]
                answer = _ask(processes[name], name, f"steps {steps}")
                results[name]["times_s"] += answer["times_s"]
                results[name]["cpu_s"] += answer["cpu_s"]
        for name in names:
            results[name].update(_ask(processes[name], name, "memory"))
    finally:
        for process in processes.values():
            process.stdin.close()
            process.wait()
    for entry in results.values():
        entry["median_s"] = statistics.median(entry["times_s"])
        entry["median_cpu_s"] = statistics.median(entry["cpu_s"])
    return results


def summarise(results: dict[str, dict]) -> dict:
    """Ratios: time / ReLU floor, asa-snn time / each peer's, peak memory / the leanest peer's."""
    floors = {n: results[n]["median_s"] for n in FLOOR_LAYOUTS if n in results}
    floor_name = min(floors, key=floors.get)
    floor = floors[floor_name]
    peers = [n for n in PEERS if n in results]
    leanest = min(peers, key=lambda n: results[n]["peak_increase_bytes"]) if peers else None
    summary: dict = {"floor": floor_name, "floor_s": floor, "leanest_peer": leanest, "entries": {}}
    for name, entry in results.items():
        row = {"median_s": entry["median_s"], "time_over_floor": entry["median_s"] / floor}
        row["median_cpu_s"] = entry["median_cpu_s"]
        row["peak_increase_mib"] = entry["peak_increase_bytes"] / 2**20
        if leanest is not None:
            lean_bytes = results[leanest]["peak_increase_bytes"]
            row["memory_over_leanest_peer"] = entry["peak_increase_bytes"] / lean_bytes
        if name in OURS:
            row["peer_time_over_this"] = {p: results[p]["median_s"] / entry["median_s"] for p in peers}
        summary["entries"][name] = row
    return summary


def print_table(summary: dict) -> None:
    """Print one row per entry: median time, time / floor, peak memory, memory / leanest peer."""
    print(f"\nfloor: {summary['floor']} ({summary['floor_s']:.3f} s)", end="; ")
    print(f"leanest peer: {summary['leanest_peer']}")
    header = f"{'entry':<22}{'median s/step':>14}{'x floor':>9}{'cpu s/step':>11}"
    print(header + f"{'peak MiB':>10}{'x leanest':>11}")
    for name, row in summary["entries"].items():
        lean = row.get("memory_over_leanest_peer")
        lean_text = f"{lean:>11.2f}" if lean is not None else f"{'-':>11}"
        print(
            f"{name:<22}{row['median_s']:>14.3f}{row['time_over_floor']:>9.2f}{row['median_cpu_s']:>11.3f}"
            f"{row['peak_increase_mib']:>10.0f}{lean_text}"
        )
    for name, row in summary["entries"].items():
        for peer, ratio in row.get("peer_time_over_this", {}).items():
            print(f"{name} is {ratio:.2f}x faster than {peer}")


def _at_least(low: int):
    """An argparse type: an integer >= ``low``, else a usage error naming the bound."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    """Command line: the full benchmark, ``--quick`` smoke run, or one ``--worker`` entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one round (smoke run)")
    parser.add_argument("--only", nargs="+", help="run only these entries (names as printed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON result file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=_at_least(1), default=6, help="turns each entry takes (default 6)")
    parser.add_argument("--steps", type=_at_least(1), default=3, help="timed steps per turn (default 3)")
    parser.add_argument(
        "--settle", type=_at_least(0), default=1, help="untimed steps opening each turn (default 1)"
    )
    parser.add_argument(
        "--allocator",
        choices=("thp", "default"),
        default="thp",
        help="thp: every entry backs tensors >= 2 MiB with huge pages, as the asa-snn command does "
        "(default); default: PyTorch's plain allocator for every entry",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.worker:
        Worker(args.worker).serve()
        return
    from nets import BUILDERS

    rounds, warmup, steps = (2, 1, 1) if args.quick else (args.rounds, 2, args.steps)
    names, versions = [], {}
    for name in args.only or [n for n in BUILDERS if n not in ON_REQUEST]:
        version = _installed(name)
        if version is None:
            print(f"note: skipping {name}: package not installed (pip install -e .[bench])")
            continue
        names.append(name)
        if version:
            versions[name] = version
    if not any(n in names for n in FLOOR_LAYOUTS):
        names.append(FLOOR_LAYOUTS[0])
    print(
        f"training step, x {SHAPE}, {THREADS} threads, allocator {args.allocator}: "
        f"{warmup} warm-up, {rounds} rounds x ({args.settle} settling + {steps} timed) steps"
    )
    results = measure(names, rounds, warmup, steps, args.allocator, args.settle)
    summary = summarise(results)
    print_table(summary)
    import torch

    report = {
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": THREADS,
        "allocator": args.allocator,
        "input_shape_TBCHW": list(SHAPE),
        "quick": args.quick,
        "rounds": rounds,
        "warmup_steps": warmup,
        "timed_steps_per_round": steps,
        "settling_steps_per_round": args.settle,
        "load_average_1_5_15min_at_end": list(os.getloadavg()),
        "peer_versions": versions,
        "time_method": "median over all timed steps of time.perf_counter (wall) and time.process_time (cpu)",
        "memory_method": "ru_maxrss after all steps minus /proc/self/statm RSS before the first step",
        "summary": summary,
        "raw": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
