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
    python benchmarks/train_step.py --profile  # where ASA-2's time goes, per pass (one process)
    python benchmarks/train_step.py --device cuda   # GPU mode: T = 16 and 60, batch 32

Device mode (``--device cpu|cuda|cuda:N``): the same entries (plus SpikingJelly's CuPy and Triton
backends where they import) for each T of ``--steps-T`` (default 16 60) at batch ``--batch``
(default 32); on CUDA every timed step is bracketed by ``torch.cuda.synchronize`` and the peak
memory is ``torch.cuda.max_memory_allocated`` over the steps minus the memory held before the
first step. ``--device cpu`` runs that mode on the CPU (the smoke test uses it); ``--device cuda``
refuses to start, with one message, where torch sees no CUDA device.
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
PEERS = ("spikingjelly", "spikingjelly (cupy)", "spikingjelly (triton)", "snntorch", "norse")
OURS = (
    "asa-snn (none)",
    "asa-snn (asa2)",
    "asa-snn (asa1)",
    "asa-snn (none, NCHW)",
    "asa-snn (none, unfused)",
    "asa-snn (asa2, reference)",
    "asa-snn (asa2, Y whole)",
    "asa-snn (asa2, compiled)",
    "asa-snn (asa1, compiled)",
)
ON_REQUEST = (
    "asa-snn (none, NCHW)",
    "asa-snn (none, unfused)",
    "asa-snn (asa2, reference)",
    "asa-snn (asa2, Y whole)",
    "asa-snn (asa2, compiled)",
    "asa-snn (asa1, compiled)",
    "spikingjelly (cupy)",
    "spikingjelly (triton)",
)
"""Entries the CPU mode runs only when named with ``--only`` (what a design choice gains, or GPU
backends)."""
DEVICE_ENTRIES = (
    "asa-snn (none)",
    "asa-snn (asa2)",
    "relu (batched)",
    "relu (batched, NHWC)",
    "spikingjelly",
    "spikingjelly (cupy)",
    "spikingjelly (triton)",
    "snntorch",
    "norse",
)
"""What device mode runs unless ``--only`` names entries."""
DEVICE_STEPS = (16, 60)
DEVICE_BATCH = 32


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Worker:
    """One entry's net, input and step, kept in its own process and driven through stdin.

    Protocol (one line each way): after building, the worker prints ``{"ready": true}`` (or
    ``{"error": ...}`` and exits); ``steps N`` -> JSON ``{"times_s": [...], "cpu_s": [...]}``;
    ``memory`` -> JSON ``{"peak_increase_bytes": ..., "rss_before_bytes": ...}`` (on CUDA also
    ``peak_gpu_bytes``, ``gpu_before_bytes``: allocated by torch, peak over the steps and before
    the first).
    """

    def __init__(self, name: str, device: str = "cpu", shape: tuple[int, ...] = SHAPE) -> None:
        import torch

        sys.path.insert(0, str(REPO))
        import nets

        torch.set_num_threads(THREADS)
        torch.manual_seed(0)
        nets.TIMESTEPS = shape[0]
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        with self.device:
            self.net = nets.BUILDERS[name]()
        self.net.module.to(self.device)
        self.net.module.train()
        self.x = (torch.rand(shape) < 0.2).float().to(self.device)
        self.target = torch.randint(0, 11, (shape[1],)).to(self.device)
        self.rss_before = _rss_bytes()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.gpu_before = torch.cuda.memory_allocated(self.device)

    def step(self) -> tuple[float, float]:
        """One training step; returns (wall seconds, process CPU seconds)."""
        import torch
        import torch.nn.functional as F

        self.net.module.zero_grad(set_to_none=True)
        if self.cuda:
            torch.cuda.synchronize(self.device)
        wall, cpu = time.perf_counter(), time.process_time()
        F.cross_entropy(self.net.forward(self.x), self.target).backward()
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - wall, time.process_time() - cpu

    def memory(self) -> dict:
        """Peak memory the steps needed (see the class docstring)."""
        import torch

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        answer = {"peak_increase_bytes": max(0, peak - self.rss_before), "rss_before_bytes": self.rss_before}
        if self.cuda:
            answer["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(self.device)
            answer["gpu_before_bytes"] = self.gpu_before
            answer["peak_increase_bytes"] = answer["peak_gpu_bytes"] - self.gpu_before
        return answer

    def serve(self) -> None:
        """Answer commands on stdin until it closes."""
        for line in sys.stdin:
            command = line.split()
            if command[0] == "steps":
                walls, cpus = zip(*(self.step() for _ in range(int(command[1]))), strict=True)
                answer = {"times_s": list(walls), "cpu_s": list(cpus)}
            else:
                answer = self.memory()
            print(json.dumps(answer), flush=True)


def serve_worker(name: str, device: str, shape: tuple[int, ...]) -> None:
    """Build the entry and run one untimed step (reporting a failure of either as one JSON line,
    e.g. a peer that does not run on this device), then serve its commands."""
    try:
        worker = Worker(name, device, shape)
        worker.step()
    except Exception as error:  # a peer backend that does not build here is reported, not fatal
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    worker.serve()


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    return names[0] if names else platform.processor()


def _installed(name: str) -> str | None:
    """The versions of the packages entry ``name`` needs, '' when it needs none, None when one is
    missing."""
    from nets import REQUIRES

    packages = REQUIRES.get(name, ())
    if any(importlib.util.find_spec(package) is None for package in packages):
        return None
    distributions = importlib.metadata.packages_distributions()  # module -> e.g. cupy-cuda13x
    return ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for package in packages
        for name in distributions.get(package, [package])[:1]
    )


def _ask(process: subprocess.Popen, name: str, command: str | None) -> dict:
    """Send ``command`` (None: only read the next line) and parse the worker's JSON answer."""
    if command is not None:
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
    names: list[str],
    rounds: int,
    warmup: int,
    steps: int,
    allocator: str,
    settle: int = 1,
    device: str = "cpu",
    shape: tuple[int, ...] = SHAPE,
    skipped: dict[str, str] | None = None,
) -> dict[str, dict]:
    """Time every entry in its own process, the entries taking turns.

    Each process builds its net and runs ``warmup`` steps; then ``rounds`` times, each entry in
    turn runs ``settle`` untimed steps (kept as ``settle_s``), then ``steps`` timed steps while the
    others wait, so slow drifts of the machine's load hit all entries alike. The order of the
    turns rotates by one entry each round, so no entry always follows the same neighbour (whose
    memory use changes what the kernel has at hand).
    Every process gets the same allocator setting (:func:`worker_environment`). Peak memory is
    read from each process at the end. An entry that fails to build (a peer backend that does not
    import on this machine) is left out, its error kept in ``skipped``.
    """
    script = str(Path(__file__).resolve())
    shape_text = ",".join(map(str, shape))
    processes = {
        n: subprocess.Popen(
            [sys.executable, script, "--worker", n, "--worker-device", device, "--worker-shape", shape_text],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_environment(allocator),
        )
        for n in names
    }
    try:
        for name in list(names):
            answer = _ask(processes[name], name, None)
            if "error" in answer:
                print(f"note: skipping {name}: {answer['error']}")
                if skipped is not None:
                    skipped[name] = answer["error"]
                processes.pop(name).wait()
                names = [n for n in names if n != name]
        results: dict[str, dict] = {n: {"times_s": [], "cpu_s": [], "settle_s": []} for n in names}
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


def _entries(requested: list[str] | None, default: list[str]) -> tuple[list[str], dict[str, str]]:
    """The entries to run (their packages installed; a ReLU floor added) and the peer versions."""
    names, versions = [], {}
    for name in requested or default:
        version = _installed(name)
        if version is None:
            print(f"note: skipping {name}: package not installed (pip install -e .[bench])")
            continue
        names.append(name)
        if version:
            versions[name] = version
    if not any(n in names for n in FLOOR_LAYOUTS):
        names.append(FLOOR_LAYOUTS[0])
    return names, versions


def _report_header(args: argparse.Namespace, rounds: int, warmup: int, steps: int) -> dict:
    import torch

    return {
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": THREADS,
        "allocator": args.allocator,
        "quick": args.quick,
        "rounds": rounds,
        "warmup_steps": warmup,
        "timed_steps_per_round": steps,
        "settling_steps_per_round": args.settle,
        "time_method": "median over all timed steps of time.perf_counter (wall) and time.process_time (cpu)",
    }


def run_device_mode(args: argparse.Namespace, rounds: int, warmup: int, steps: int) -> dict:
    """Device mode: every entry at each T of ``--steps-T``, batch ``--batch``, on ``--device``."""
    import torch

    sys.path.insert(0, str(REPO))
    from asa_snn.devices import resolve_device
    from asa_snn.errors import AsaSnnError

    try:
        device = resolve_device(args.device, where="--device")
    except AsaSnnError as error:
        raise SystemExit(f"train_step.py: {error}") from None
    names, versions = _entries(args.only, list(DEVICE_ENTRIES))
    report = _report_header(args, rounds, warmup, steps)
    report.update({"device": str(device), "batch": args.batch, "peer_versions": versions, "by_T": {}})
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["memory_method"] = (
            "torch.cuda.max_memory_allocated over all steps minus memory_allocated before"
        )
    else:
        report["memory_method"] = "ru_maxrss after all steps minus /proc/self/statm RSS before the first step"
    for T in args.steps_T:
        shape = (T, args.batch, *SHAPE[2:])
        print(
            f"training step on {device}, x {shape}: {warmup} warm-up, {rounds} rounds x "
            f"({args.settle} settling + {steps} timed) steps"
        )
        skipped: dict[str, str] = {}
        results = measure(
            names, rounds, warmup, steps, args.allocator, args.settle, str(device), shape, skipped
        )
        summary = summarise(results)
        print_table(summary)
        report["by_T"][str(T)] = {
            "input_shape_TBCHW": list(shape),
            "skipped": skipped,
            "summary": summary,
            "raw": results,
        }
    report["load_average_1_5_15min_at_end"] = list(os.getloadavg())
    return report


def profile_attention(kind: str, steps: int) -> dict:
    """Per-pass time of the ``asa-snn (kind)`` net's attention over ``steps`` training steps.

    One process, 2 threads, the CPU input of the default mode; ``torch.profiler`` sums the CPU
    time under each ``asa.*`` label of :mod:`asa_snn.models.attention.stepwise` (the three layers
    together) and the whole step, per step.
    """
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(REPO))
    from nets import BUILDERS

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    net = BUILDERS[f"asa-snn ({kind})"]()
    net.module.train()
    x = (torch.rand(SHAPE) < 0.2).float()
    target = torch.randint(0, 11, (SHAPE[1],))

    def step() -> None:
        net.module.zero_grad(set_to_none=True)
        with torch.profiler.record_function("step"):
            F.cross_entropy(net.forward(x), target).backward()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key == "step" or event.key.startswith("asa."):
            totals[event.key] = event.cpu_time_total / 1e3 / steps
    return {"entry": f"asa-snn ({kind})", "steps": steps, "ms_per_step": totals}


def _print_profile(result: dict) -> None:
    times = result["ms_per_step"]
    print(f"\n{result['entry']}: CPU ms per step under each label ({result['steps']} steps)")
    for label in sorted(times, key=lambda k: (k == "step", k)):
        print(f"  {label:<36}{times[label]:>9.1f}")
    attention = sum(v for k, v in times.items() if k.startswith("asa."))
    print(f"  {'all asa.* labels':<36}{attention:>9.1f}")
    if any("mix_and_neuron" in k for k in times):
        print("  (asa.mix_and_neuron includes the neuron's own loops: the mix feeds them step by step)")


def main(argv: list[str] | None = None) -> None:
    """Command line: the full benchmark, ``--quick`` smoke run, device mode, ``--profile``, or one
    ``--worker`` entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one round (smoke run)")
    parser.add_argument("--only", nargs="+", help="run only these entries (names as printed)")
    parser.add_argument(
        "--out", type=Path, help="JSON result file (default: results/train_step[_DEVICE].json)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--worker-shape", default=",".join(map(str, SHAPE)), help=argparse.SUPPRESS)
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
    parser.add_argument("--device", help="device mode on cpu, cuda or cuda:N (T of --steps-T, batch --batch)")
    parser.add_argument(
        "--steps-T",
        type=_at_least(1),
        nargs="+",
        default=list(DEVICE_STEPS),
        help="device mode: time steps T to run (default 16 60)",
    )
    parser.add_argument(
        "--batch", type=_at_least(1), default=DEVICE_BATCH, help="device mode: batch size (default 32)"
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="asa2",
        choices=("asa1", "asa2"),
        help="per-pass CPU time of asa-snn's attention (default asa2), in this process",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.worker:
        shape = tuple(int(n) for n in args.worker_shape.split(","))
        serve_worker(args.worker, args.worker_device, shape)
        return
    rounds, warmup, steps = (2, 1, 1) if args.quick else (args.rounds, 2, args.steps)
    if args.profile:
        report = profile_attention(args.profile, 3 if args.quick else 10)
        _print_profile(report)
        out = args.out or HERE / "results" / f"train_step_profile_{args.profile}.json"
    elif args.device:
        report = run_device_mode(args, rounds, warmup, steps)
        out = args.out or HERE / "results" / f"train_step_{args.device.replace(':', '')}.json"
    else:
        report = run_cpu_mode(args, rounds, warmup, steps)
        out = args.out or RESULTS
    sys.path.insert(0, str(REPO))
    from asa_snn.files import write_json

    write_json(report, out)
    print(f"\nwrote {out}")


def run_cpu_mode(args: argparse.Namespace, rounds: int, warmup: int, steps: int) -> dict:
    """The default mode: input [16, 8, 2, 32, 32] on the CPU, every entry but those on request."""
    from nets import BUILDERS

    names, versions = _entries(args.only, [n for n in BUILDERS if n not in ON_REQUEST])
    print(
        f"training step, x {SHAPE}, {THREADS} threads, allocator {args.allocator}: "
        f"{warmup} warm-up, {rounds} rounds x ({args.settle} settling + {steps} timed) steps"
    )
    results = measure(names, rounds, warmup, steps, args.allocator, args.settle)
    summary = summarise(results)
    print_table(summary)
    report = _report_header(args, rounds, warmup, steps)
    report.update(
        {
            "input_shape_TBCHW": list(SHAPE),
            "load_average_1_5_15min_at_end": list(os.getloadavg()),
            "peer_versions": versions,
            "memory_method": "ru_maxrss after all steps minus /proc/self/statm RSS before the first step",
            "summary": summary,
            "raw": results,
        }
    )
    return report


if __name__ == "__main__":
    main()
