"""Seeded evidence for the README's claim that ASA cuts spikes while keeping accuracy.

For each recipe and training seed, trains a vanilla model and each ASA kind, then runs the
redundancy analysis of the vanilla model against each ASA model on the vanilla run's test part.
Per recipe and attention kind it reports, over the seeds, the mean and the spread (min..max) of

- test accuracy and test NASFR (from ``train_recipe``),
- the Eq. 11 energy difference under one preset (``delta_e_j``; < 0: ASA saves energy),

    delta E = E_MAC x delta MAC - E_AC x delta AC

where delta MAC is the attention's extra multiply-accumulates and delta AC the synaptic operations
ASA saves, both per sample.

Writes ``results.json`` (every run and the aggregates) and ``table.md`` to ``--out`` and prints
the table. Example::

    python experiments/asa_claims.py --recipes synthetic_speck --seeds 0 1 2 --out runs/asa_claims
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VANILLA = "none"
METRICS = ("test_accuracy", "test_nasfr", "eq11_delta_e_j")


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, min and max of ``values`` (at least one value)."""
    if not values:
        raise ValueError("spread needs at least one value, got none")
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "n": len(values)}


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """Group runs by (recipe, attention) and give each metric's spread over the seeds.

    A metric missing from a run (the vanilla run has no Eq. 11 difference) is left out.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["recipe"], run["attention"]), []).append(run)
    return {
        key: {
            m: spread([r[m] for r in group if r.get(m) is not None])
            for m in METRICS
            if any(r.get(m) is not None for r in group)
        }
        for key, group in groups.items()
    }


def _fmt(s: dict[str, float] | None, digits: int, scale: float = 1.0) -> str:
    if s is None:
        return "-"
    return f"{s['mean'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}..{s['max'] * scale:.{digits}f})"


def seed_wins(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Per ASA (recipe, kind): on how many seeds ASA did as well as its own seed's vanilla run."""
    vanilla = {(r["recipe"], r["seed"]): r for r in runs if r["attention"] == VANILLA}
    counts: dict[tuple[str, str], list[int]] = {}
    for r in runs:
        base = vanilla.get((r["recipe"], r["seed"]))
        if r["attention"] == VANILLA or base is None:
            continue
        c = counts.setdefault((r["recipe"], r["attention"]), [0, 0, 0, 0])
        c[0] += r["test_accuracy"] >= base["test_accuracy"]
        c[1] += r["test_nasfr"] < base["test_nasfr"]
        c[2] += r["eq11_delta_e_j"] is not None and r["eq11_delta_e_j"] < 0
        c[3] += 1
    return {k: f"acc >= {a}/{n}, NASFR < {b}/{n}, delta E < 0 {c}/{n}" for k, (a, b, c, n) in counts.items()}


def markdown_table(runs: Sequence[dict[str, Any]], preset: str) -> str:
    """One row per (recipe, attention): mean (min..max) over the seeds, and per-seed wins against vanilla."""
    wins = seed_wins(runs)
    lines = [
        f"| recipe | attention | seeds | test accuracy | NASFR | Eq. 11 delta E, {preset} (uJ; < 0 saves) | "
        "seeds where ASA vs same-seed vanilla has |",
        "|---|---|---|---|---|---|---|",
    ]
    for (recipe, attention), s in aggregate(runs).items():
        acc, nasfr, eq11 = (s.get(m) for m in METRICS)
        lines.append(
            f"| {recipe} | {attention} | {acc['n']} | {_fmt(acc, 3)} | {_fmt(nasfr, 4)} | "
            f"{_fmt(eq11, 3, 1e6)} | {wins.get((recipe, attention), '-')} |"
        )
    return "\n".join(lines) + "\n"


def write_results(out: Path, runs: Sequence[dict[str, Any]], preset: str, args: dict[str, str]) -> None:
    """results.json (the runs and their aggregates) and table.md; rewritten after every run."""
    summary = [{"recipe": r, "attention": a, **s} for (r, a), s in aggregate(runs).items()]
    payload = {"args": args, "preset": preset, "runs": list(runs), "summary": summary}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    (out / "table.md").write_text(markdown_table(runs, preset))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["synthetic_speck"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--attention", nargs="+", default=["asa1", "asa2"], help="ASA kinds (vanilla always runs)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (default: the recipe's)")
    parser.add_argument("--preset", default="fp32_45nm", help="energy preset of the Eq. 11 column")
    parser.add_argument("--out", type=Path, default=Path("runs/asa_claims"))
    parser.add_argument(
        "--table-from",
        nargs="+",
        type=Path,
        default=None,
        help="only print the table of these results.json files (their runs merged)",
    )
    args = parser.parse_args(argv)
    if args.table_from:
        runs = [r for f in args.table_from for r in json.loads(f.read_text())["runs"]]
        print(markdown_table(runs, args.preset))
        return 0

    from asa_snn.train.trainer import train_recipe
    from asa_snn.workflows.analyze import analyze_checkpoints

    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    kinds = [VANILLA] + [k for k in args.attention if k != VANILLA]
    for recipe in args.recipes:
        for seed in args.seeds:
            ckpts: dict[str, Path] = {}
            for kind in kinds:
                overrides = [f"model.attention={kind}", f"train.seed={seed}"]
                if args.epochs is not None:
                    overrides.append(f"train.epochs={args.epochs}")
                start = time.perf_counter()
                folder = args.out / recipe / f"seed{seed}"
                result = train_recipe(recipe, overrides, folder / kind, progress=False)
                ckpts[kind] = Path(result["checkpoint"])
                run = {
                    "recipe": recipe,
                    "seed": seed,
                    "attention": kind,
                    "overrides": overrides,
                    "test_accuracy": float(result["test_accuracy"]),
                    "test_nasfr": float(result["test_nasfr"]),
                    "eq11_delta_e_j": None,
                    "train_s": round(time.perf_counter() - start, 1),
                }
                if kind != VANILLA:
                    metrics = analyze_checkpoints(
                        ckpts[VANILLA],
                        ckpts[kind],
                        folder / f"analysis_{kind}",
                        labels=("vanilla", kind),
                        progress=False,
                    )
                    if args.preset not in metrics.get("eq11", {}):
                        found = sorted(metrics.get("eq11", {}))
                        raise ValueError(f"preset {args.preset!r} has no Eq. 11 entry; found {found}")
                    run["eq11"] = metrics["eq11"][args.preset]
                    run["eq11_delta_e_j"] = float(run["eq11"]["delta_e_j"])
                runs.append(run)
                brief = {k: v for k, v in run.items() if k not in ("eq11", "overrides")}
                print(json.dumps(brief), flush=True)
                write_results(args.out, runs, args.preset, {k: str(v) for k, v in vars(args).items()})
    print(markdown_table(runs, args.preset))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
