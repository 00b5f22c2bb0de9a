"""The redundancy analysis of one model, or of a vanilla / ASA pair on the same data.

:func:`analyze` runs :func:`~asa_snn.analysis.recorder.measure` for each model, turns the statistics
into the paper's metrics (:func:`model_metrics`) and writes into ``out_dir``:

- ``metrics.json``: every number (plain JSON; NaN written as null),
- ``report.md``: the tables (firing rates, NASFR both ways, ghost features, background fractions and
  patterns, PTD / variance / QE, energy per preset; with two models side by side with deltas and Eq. 11),
- ``figures/*.png`` and ``*.svg`` (:mod:`asa_snn.analysis.figures`).

Everything is written into a temporary folder beside ``out_dir`` first and moved into place at the end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from asa_snn.analysis import features, firing, membrane
from asa_snn.analysis.figures import (
    plot_channel_over_time,
    plot_feature_comparison,
    plot_firing_rates,
    plot_mpd,
    plot_spike_feature_grid,
)
from asa_snn.analysis.operations import model_layer_ops
from asa_snn.analysis.recorder import LayerStats, MaskSource, Measurements, measure
from asa_snn.energy.model import GENERIC_PRESETS, EnergyModel, OpEnergy, energy, energy_difference
from asa_snn.errors import AsaSnnError
from asa_snn.files import staged_folder

GHOST_THRESHOLD = 0.95
"""Cosine similarity of two N-SFR maps at or above which they are a ghost pair."""


def _mean(values: np.ndarray) -> float | None:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else None


def layer_metrics(
    stats: LayerStats, n_samples: int, ghost_threshold: float = GHOST_THRESHOLD
) -> dict[str, Any]:
    """All metrics of one spiking layer (spatial analyses only for maps with more than one position)."""
    nsfr = firing.n_sfr(stats.fired, n_samples)
    csfr = firing.c_sfr(nsfr)
    spatial = stats.shape[1] * stats.shape[2] > 1
    ptd = membrane.ptd(stats.hist, stats.edges, stats.v_th)
    variance = membrane.variance(stats.mem_sum, stats.mem_sq, stats.mem_count)
    background = None
    if stats.background_spikes is not None:
        background = features.background_fraction(stats.background_spikes, stats.spikes.sum((2, 3)))
    rule = features.MaskPatternRule() if background is not None else features.AreaPatternRule()
    labels = rule(nsfr, background) if spatial else None
    ghost = features.ghost_summary(nsfr, ghost_threshold) if spatial else None
    return {
        "shape": list(stats.shape),
        "v_th": stats.v_th,
        "neurons": int(np.prod(stats.shape)),
        "t_sfr": firing.t_sfr([nsfr]),
        "c_sfr": csfr,
        "nasfr_paper": firing.nasfr_paper([nsfr]),
        "nasfr_released": firing.nasfr_released([stats.spikes], n_samples),
        "spikes_per_sample": float(stats.spikes.sum() / n_samples),
        "ghost": None if ghost is None else ghost.__dict__,
        "temporal_similarity": _mean(features.temporal_similarity(nsfr)) if spatial else None,
        "background_fraction": background,
        "background_fraction_mean": None if background is None else _mean(background),
        "pattern_rule": type(rule).__name__ if spatial else None,
        "patterns": labels,
        "pattern_counts": None if labels is None else features.pattern_counts(labels),
        "ptd": ptd,
        "ptd_mean": _mean(ptd),
        "variance": variance,
        "variance_mean": _mean(variance),
        "qe": membrane.mean_from_sums(stats.qe_sum, stats.mem_count),
        "nonfinite_membrane": stats.nonfinite,
    }


def model_metrics(
    model: nn.Module, measured: Measurements, presets: Mapping[str, EnergyModel], duration_s: float | None
) -> dict[str, Any]:
    """Network, per-layer, operation and energy metrics of one measured model (plain Python / NumPy)."""
    n = measured.n_samples
    nsfrs = [firing.n_sfr(s.fired, n) for s in measured.layers.values()]
    ops = model_layer_ops(model, measured)
    total_nonfinite = sum(s.nonfinite for s in measured.layers.values())
    return {
        "n_samples": n,
        "timesteps": measured.timesteps,
        "masks": measured.has_masks,
        "network": {
            "t_sfr": firing.t_sfr(nsfrs),
            "nasfr_paper": firing.nasfr_paper(nsfrs),
            "nasfr_released": firing.nasfr_released([s.spikes for s in measured.layers.values()], n),
            "qe": membrane.mean_from_sums(
                sum(s.qe_sum.sum() for s in measured.layers.values()),
                sum(s.mem_count.sum() for s in measured.layers.values()),
            ),
            "nonfinite_membrane": total_nonfinite,
        },
        "layers": {name: layer_metrics(stats, n) for name, stats in measured.layers.items()},
        "operations": [op.__dict__ for op in ops],
        "energy": {name: energy(ops, p, duration_s).to_dict() for name, p in presets.items()},
        "_ops": ops,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt(value: Any) -> str:
    """Number formatting shared by report.md and its tests: 4 significant digits, "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, bool | int | np.integer):
        return str(int(value))
    return f"{float(value):.4g}"


def _delta(a: Any, b: Any) -> str:
    if a is None or b is None:
        return "n/a"
    return fmt(b - a)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _compare(title: str, models: dict[str, dict], rows: list[tuple[str, Any]]) -> list[str]:
    """A table with one column per model, and a delta column (last - first) when there are two."""
    labels = list(models)
    header = ["", *labels] + (["delta"] if len(labels) == 2 else [])
    body = []
    for name, getter in rows:
        values = [getter(models[label]) for label in labels]
        body.append([name, *map(fmt, values)] + ([_delta(*values)] if len(labels) == 2 else []))
    return [f"## {title}", "", *_table(header, body), ""]


def _layer_rows(models: dict[str, dict], key: Any) -> list[tuple[str, Any]]:
    names = list(dict.fromkeys(n for m in models.values() for n in m["layers"]))
    return [(name, lambda m, n=name: key(m["layers"][n]) if n in m["layers"] else None) for name in names]


def _pattern(kind: str):
    return lambda layer: None if layer["pattern_counts"] is None else layer["pattern_counts"][kind]


def _ghost(key: str):
    return lambda layer: None if layer["ghost"] is None else layer["ghost"][key]


def render_report(metrics: dict[str, Any]) -> str:
    """report.md text from the metrics dictionary (the JSON form of :func:`analyze`)."""
    models = metrics["models"]
    first = next(iter(models.values()))
    lines = [
        "# Redundancy analysis",
        "",
        f"Samples: {first['n_samples']}, steps T = {first['timesteps']}, models: {', '.join(models)}.",
        "NASFR (paper) = mean over steps of T-SFR (paper Definition 1); NASFR (released) = total spikes / "
        "(neurons x T x samples) over all spiking layers including the output (released code).",
        f"Ghost pairs: cosine similarity of N-SFR maps >= {metrics['definitions']['ghost_threshold']} at the "
        "same step, silent maps ignored; counts are means over steps. QE = mean (v - s * v_th)^2.",
        "",
    ]
    for label, model in models.items():
        if model["network"]["nonfinite_membrane"]:
            lines += [
                f"**WARNING ({label})**: {model['network']['nonfinite_membrane']} non-finite membrane values "
                "were left out of every membrane statistic.",
                "",
            ]
    network = [
        ("NASFR (paper, Def. 1)", lambda m: m["network"]["nasfr_paper"]),
        ("NASFR (released code)", lambda m: m["network"]["nasfr_released"]),
        ("QE (all layers)", lambda m: m["network"]["qe"]),
        ("non-finite membrane values", lambda m: m["network"]["nonfinite_membrane"]),
    ]
    lines += _compare("Network", models, network)
    lines += _compare(
        "Mean firing rate per layer (NASFR paper)", models, _layer_rows(models, lambda x: x["nasfr_paper"])
    )
    lines += _compare(
        "NASFR (released code) per layer", models, _layer_rows(models, lambda x: x["nasfr_released"])
    )
    lines += _compare(
        "Ghost pairs per layer (mean over steps)", models, _layer_rows(models, _ghost("mean_pairs"))
    )
    lines += _compare(
        "Ghost groups per layer (mean over steps)", models, _layer_rows(models, _ghost("mean_groups"))
    )
    lines += _compare(
        "Temporal similarity per layer (consecutive steps)",
        models,
        _layer_rows(models, lambda x: x["temporal_similarity"]),
    )
    lines += _compare(
        "Background spike fraction per layer",
        models,
        _layer_rows(models, lambda x: x["background_fraction_mean"]),
    )
    for kind in ("noise", "normal", "null"):
        lines += _compare(f"Channels with the {kind} pattern", models, _layer_rows(models, _pattern(kind)))
    lines += _compare(
        "PTD per layer (mean over channels and steps)", models, _layer_rows(models, lambda x: x["ptd_mean"])
    )
    lines += _compare(
        "Membrane variance per layer (mean)", models, _layer_rows(models, lambda x: x["variance_mean"])
    )
    lines += _compare("QE per layer", models, _layer_rows(models, lambda x: x["qe"]))
    presets = list(first["energy"])
    lines += _compare(
        "Energy per sample (J)", models, [(p, lambda m, p=p: m["energy"][p]["total_j"]) for p in presets]
    )
    for name, diff in metrics.get("eq11", {}).items():
        rows = [
            ["delta MAC (extra attention MACs)", fmt(diff["delta_mac"])],
            ["delta AC (saved synaptic ops)", fmt(diff["delta_ac"])],
            ["E_MAC x delta MAC (J)", fmt(diff["mac_cost_j"])],
            ["E_AC x delta AC (J)", fmt(diff["ac_saving_j"])],
            ["delta E (J; < 0 saves energy)", fmt(diff["delta_e_j"])],
        ]
        lines += [f"## Eq. 11 energy difference ({name})", "", *_table(["term", "value"], rows), ""]
    lines += ["## Figures", "", *(f"- `{path}`" for path in metrics["figures"]), ""]
    return "\n".join(lines)


def _figure_layer(measured: Measurements) -> str | None:
    spatial = [name for name, s in measured.layers.items() if s.shape[1] * s.shape[2] > 1]
    return spatial[0] if spatial else None


def _figures(folder: Path, measured: dict[str, Measurements], metrics: dict[str, Any]) -> list[str]:
    folder.mkdir()
    written: list[Path] = []
    rates = {
        label: {n: x["nasfr_paper"] for n, x in m["layers"].items()} for label, m in metrics["models"].items()
    }
    warning = ", ".join(
        f"{label}: {m['network']['nonfinite_membrane']} non-finite membrane values excluded"
        for label, m in metrics["models"].items()
        if m["network"]["nonfinite_membrane"]
    )
    written += plot_firing_rates(rates, folder / "firing_rates", "Mean firing rate", warning)
    nsfr_by_model = {}
    for label, data in measured.items():
        name = _figure_layer(data)
        if name is None:
            continue
        stats, layer = data.layers[name], metrics["models"][label]["layers"][name]
        nsfr = firing.n_sfr(stats.fired, data.n_samples)
        nsfr_by_model[label] = nsfr
        note = f"{stats.nonfinite} non-finite membrane values excluded" if stats.nonfinite else ""
        written += plot_spike_feature_grid(
            nsfr, 0, folder / f"{label}_spike_features", f"{label} {name}", warning=note
        )
        busiest = int(np.argmax(firing.c_sfr(nsfr).mean(0)))
        written += plot_channel_over_time(
            nsfr, busiest, folder / f"{label}_channel_over_time", f"{label} {name}", note
        )
        order = np.argsort(firing.c_sfr(nsfr).mean(0))
        channels = sorted({int(order[-1]), int(order[len(order) // 2]), int(order[0])})
        written += plot_mpd(
            stats.hist,
            stats.edges,
            stats.v_th,
            np.asarray(layer["ptd"]),
            np.asarray(layer["variance"]),
            nsfr,
            channels,
            0,
            folder / f"{label}_mpd",
            f"{label} {name}",
            note,
        )
    if len(nsfr_by_model) == 2:
        written += plot_feature_comparison(
            nsfr_by_model, 0, folder / "comparison_spike_features", "Side by side"
        )
    return [str(Path(folder.name) / path.name) for path in written]


def analyze(
    model: nn.Module,
    dataset: Sequence,
    out_dir: str | Path,
    *,
    compare_model: nn.Module | None = None,
    labels: tuple[str, str] = ("vanilla", "asa"),
    masks: MaskSource | None = None,
    max_samples: int | None = None,
    batch_size: int = 16,
    presets: Mapping[str, EnergyModel] = GENERIC_PRESETS,
    duration_s: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure ``model`` (and ``compare_model``) on ``dataset`` and write metrics.json, report.md, figures.

    Args:
        model: the (vanilla) model; labelled ``labels[0]``.
        dataset: items ``(frames [T, C, H, W], label)``.
        out_dir: output folder (created; files already there with the same names are replaced).
        compare_model: optional second model (e.g. the ASA version) measured on the same samples.
        labels: names of the two models in tables, JSON and figure files.
        masks: sample index -> bool [T, H, W] object masks (e.g. ``SyntheticDVS.foreground_masks``).
        max_samples: number of samples (default: all).
        batch_size: samples per forward pass.
        presets: energy models by name (the CLI passes every chip's model too,
            :func:`asa_snn.chips.registry.energy_presets`).
        duration_s: duration of one inference in seconds (Speck resting power), or None.
        progress: show progress bars.

    Returns:
        The metrics dictionary written to metrics.json.
    """
    if len(labels) != 2 or labels[0] == labels[1]:
        raise AsaSnnError(f"analyze: labels must be two different names, got {labels}")
    models = (
        {labels[0]: model}
        if compare_model is None
        else dict(zip(labels, (model, compare_model), strict=True))
    )
    options = {"batch_size": batch_size, "max_samples": max_samples, "masks": masks, "progress": progress}
    measured = {label: measure(m, dataset, **options) for label, m in models.items()}
    results = {label: model_metrics(models[label], measured[label], presets, duration_s) for label in models}
    spec = measured[labels[0]].hist_spec
    metrics: dict[str, Any] = {
        "definitions": {
            "ghost_threshold": GHOST_THRESHOLD,
            "qe_spike_value": "s * v_th",
            "ptd": "centre of [left edge of leftmost, right edge of rightmost] of the 3 tallest bars - v_th",
            "histogram_units": f"v_th x [{spec.low}, {spec.high}) in {spec.bins} bins + under/overflow",
        },
        "models": results,
    }
    if compare_model is not None:
        vanilla, asa = (results[label]["_ops"] for label in labels)
        metrics["eq11"] = {
            name: energy_difference(vanilla, asa, p).to_dict()
            for name, p in presets.items()
            if isinstance(p, OpEnergy)
        }
    with staged_folder(out_dir) as staging:
        plain = _plain(metrics)
        plain["figures"] = _figures(staging / "figures", measured, plain)
        (staging / "metrics.json").write_text(json.dumps(plain, indent=1))
        (staging / "report.md").write_text(render_report(plain))
    return plain
