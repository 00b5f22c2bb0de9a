"""Peak memory of ``asa-snn simulate`` over folders of 20, 1,000 and 5,000 recordings.

Graph: the quantized speck_net-sized graph of ``speck_events.py`` (``speck_graph``: int8 weights
drawn at random, IAF neurons; input 34x34 N-MNIST cropped to 32x32, 30 steps of 10 ms), saved to
a temporary folder. Data: temporary folders of N links (hard links where the file system allows,
else symbolic links; nothing is copied) to the 1,000 N-MNIST training recordings of
``../shared/data/nmnist/train``, cycled for N > 1,000.

Each run is one child process, ``python -m asa_snn.cli simulate GRAPH --backend speck --data
FOLDER``; its peak resident set size is ``ru_maxrss`` from ``os.wait4`` and its wall time the
time to its exit, ``--repeat`` runs per size (median kept, range shown: the allocator makes the
peak vary by tens of MiB between identical runs). With ``--also-library N ...`` those sizes also
run a child that calls ``asa_snn.workflows.simulate.simulate`` (which keeps every recording's
result, spike maps included, for comparisons between backends: what the command ran before it
streamed summaries), for contrast.

Run::

    .venv/bin/python benchmarks/simulate_memory.py --also-library 1000 5000
    # writes benchmarks/results/simulate_memory.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speck_events import DATA, speck_graph

from asa_snn.convert.graph import save_graph
from asa_snn.files import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "simulate_memory.json"

_LIBRARY = """
import sys
from asa_snn.convert.graph import load_graph
from asa_snn.workflows.simulate import simulate
result, summary = simulate(load_graph(sys.argv[1]), sys.argv[2], "speck")
print(summary["samples"], "samples")
"""


def link_folder(folder: Path, count: int) -> Path:
    """``folder`` holding ``count`` links to the N-MNIST recordings (cycled), named 00000.bs2, ..."""
    sources = sorted(DATA.glob("*.bs2"), key=lambda path: int(path.stem))
    folder.mkdir()
    for index in range(count):
        source, target = sources[index % len(sources)].resolve(), folder / f"{index:05d}.bs2"
        try:
            os.link(source, target)
        except OSError:  # another file system, or a read-only one: a symbolic link reads the same
            target.symlink_to(source)
    return folder


def run_child(command: list[str]) -> dict:
    """Run ``command``; its exit status, wall seconds and peak RSS (MiB, from ``os.wait4``)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here
        seconds = time.perf_counter() - started
        err.seek(0)
        out.seek(0)
        if process.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} failed ({process.returncode}):\n{err.read().decode()[-2000:]}"
            )
        tail = out.read().decode().strip().splitlines()[-3:]
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout_tail": tail}


def summary(runs: list[dict]) -> dict:
    """Median, lowest and highest peak RSS and wall time of repeated runs."""
    peaks = sorted(run["peak_rss_mib"] for run in runs)
    times = sorted(run["seconds"] for run in runs)
    return {
        "runs": len(runs),
        "peak_rss_mib": {"median": statistics.median(peaks), "min": peaks[0], "max": peaks[-1]},
        "seconds": {"median": statistics.median(times), "min": times[0], "max": times[-1]},
        "each": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 1000, 5000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median kept, range shown)")
    parser.add_argument(
        "--also-library", type=int, nargs="*", default=[], help="sizes to also run simulate() keeping results"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(
            f"N-MNIST recordings not found at {DATA.resolve()} (see /work/shared/data/README.md)"
        )
    entries = []
    with tempfile.TemporaryDirectory(prefix="simulate-memory-") as scratch:
        graph = save_graph(speck_graph(), Path(scratch) / "graph")
        for count in args.sizes:
            folder = link_folder(Path(scratch) / f"recordings_{count}", count)
            command = [sys.executable, "-m", "asa_snn.cli", "simulate", str(graph), "--backend", "speck"]
            runs = {
                "asa-snn simulate": [run_child([*command, "--data", str(folder)]) for _ in range(args.repeat)]
            }
            if count in args.also_library:
                library = [sys.executable, "-c", _LIBRARY, str(graph), str(folder)]
                runs["simulate() keeping results"] = [run_child(library)]
            for label, measured in runs.items():
                entry = {"entry": label, "recordings": count, **summary(measured)}
                entries.append(entry)
                peak, seconds = entry["peak_rss_mib"], entry["seconds"]
                print(
                    f"{label:28s} {count:6d} recordings  {seconds['median']:7.1f} s  "
                    f"peak {peak['median']:6.1f} MiB ({len(measured)} runs: {peak['min']:.1f} to "
                    f"{peak['max']:.1f})"
                )
    document = {
        "benchmark": "simulate_memory",
        "command": "asa-snn simulate GRAPH --backend speck --data FOLDER",
        "graph": "speck_events.speck_graph(): 34x34 N-MNIST cropped to 32x32, 30 steps of 10 ms, int8",
        "data": "links to ../shared/data/nmnist/train/*.bs2, cycled",
        "results": entries,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
            "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", "unset (the command sets 1)"),
        },
    }
    print(f"wrote {write_json(document, args.out)}")


if __name__ == "__main__":
    main()
