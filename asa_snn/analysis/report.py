"""The redundancy analysis of one model, or of a vanilla / ASA pair on the same data.

:func:`analyze` runs :func:`~asa_snn.analysis.recorder.measure` for each model, turns the statistics
into the paper's metrics (:func:`model_metrics`) and writes into ``out_dir``:

- ``metrics.json``: every number (plain JSON; NaN written as null),
- ``report.md``: the tables (firing rates, NASFR both ways, ghost features, background fractions and
  patterns, PTD / variance with the shares outside the histogram range, QE with its assumptions,
  energy per preset with the Speck estimate marked; with two models side by side with deltas, Eq. 11
  and its break-even),
- ``figures/*.png`` and ``*.svg`` (:mod:`asa_snn.analysis.figures`): spike features and MPDs for
  the chosen steps and layers (``feature_steps``, ``feature_layers``; default step 0 of the first
  spatial layer), each file named ``<model>_<figure>_<layer>_t<step>``.

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
from asa_snn.analysis.recorder import (
    MPD_QUANTITIES,
    HistogramSpec,
    LayerStats,
    MaskSource,
    Measurements,
    measure,
)
from asa_snn.energy.model import GENERIC_PRESETS, EnergyModel, LayerOps, OpEnergy, energy, energy_difference
from asa_snn.energy.neurobench import NEUROBENCH_VERSION, neurobench_metrics
from asa_snn.errors import AsaSnnError
from asa_snn.files import staged_folder
from asa_snn.models.recording import SpikingNeuron

GHOST_THRESHOLD = 0.95
"""Cosine similarity of two N-SFR maps at or above which they are a ghost pair."""

QE_NOTE = (
    "QE = mean over neurons, samples and steps of (U - s * v_th)^2 with U the membrane potential before "
    "reset and s the spike count. The spike's quantized value s * v_th is an ASSUMPTION: the paper "
    "(section 5.5, Table 4) does not say what value a spike stands for. Only the QE of the paper's LIF "
    "networks is comparable to Table 4: a non-leaky IAF neuron without a lower bound (min_v unset) "
    "keeps integrating negative input, its potential drifts far below zero and those large negative "
    "values dominate the mean square."
)

NEUROBENCH_NOTE = (
    f"NeuroBench metrics (definitions of neurobench {NEUROBENCH_VERSION}, asa_snn/energy/neurobench.py): "
    "footprint = bytes of every parameter and buffer; connection sparsity = zero weights / weights of "
    "every conv and linear layer; activation sparsity = 1 - neuron-steps with a spike / (neurons x T); "
    "synaptic operations per sample: Effective_ACs = synaptic ops of spike-count inputs (boundary-exact "
    "fan-out), Effective_MACs = T x FLOPs of real-valued inputs (the first layer) + attention MACs, "
    "Dense = T x FLOPs of every layer + attention MACs; membrane updates = neurons x T per sample. "
    "Where the neurobench package counts otherwise: it skips synapses with zero weight and zero inputs "
    "of MAC layers, decides AC or MAC from the input values ({-1, 0, 1} = spikes), leaves a conv's "
    "padding out of Dense, and counts only membranes that changed (snnTorch neurons only)."
)


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
    binned = float(stats.hist.sum())
    filled = stats.hist.sum(-1) > 0
    background = None
    if stats.background_spikes is not None:
        background = features.background_fraction(stats.background_spikes, stats.spikes.sum((2, 3)))
    rule = features.MaskPatternRule() if background is not None else features.AreaPatternRule()
    labels = rule(nsfr, background) if spatial else None
    ghost = features.ghost_summary(nsfr, ghost_threshold) if spatial else None
    return {
        "shape": list(stats.shape),
        "v_th": stats.v_th,
        "neuron": stats.neuron,
        "unbounded_below": stats.unbounded_below,
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
        "mpd_quantity": stats.quantity,
        "histogram_range": [float(stats.edges[0]), float(stats.edges[-1])],
        "below_range_share": float(stats.hist[..., 0].sum() / binned) if binned else None,
        "above_range_share": float(stats.hist[..., -1].sum() / binned) if binned else None,
        "ptd_peak_outside_share": (
            float(membrane.peak_outside(stats.hist)[filled].mean()) if filled.any() else None
        ),
        "qe": membrane.mean_from_sums(stats.qe_sum, stats.mem_count),
        "nonfinite_membrane": stats.nonfinite,
    }


def model_neurobench(model: nn.Module, ops: list[LayerOps]) -> dict[str, Any]:
    """NeuroBench's metrics of ``model`` (:func:`~asa_snn.energy.neurobench.neurobench_metrics`):
    footprint over its parameters and buffers, connection sparsity over its conv / linear weights."""
    synaptic = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    weights = [m.weight.detach().cpu().numpy() for m in model.modules() if isinstance(m, synaptic)]
    return neurobench_metrics(ops, weights, [*model.parameters(), *model.buffers()])


def model_metrics(
    model: nn.Module, measured: Measurements, presets: Mapping[str, EnergyModel], duration_s: float | None
) -> dict[str, Any]:
    """Network, per-layer, operation and energy metrics of one measured model (plain Python / NumPy)."""
    n = measured.n_samples
    nsfrs = [firing.n_sfr(s.fired, n) for s in measured.layers.values()]
    ops = model_layer_ops(model, measured)
    total_nonfinite = sum(s.nonfinite for s in measured.layers.values())
    unbounded = [name for name, s in measured.layers.items() if s.unbounded_below]
    return {
        "n_samples": n,
        "timesteps": measured.timesteps,
        "masks": measured.has_masks,
        "mpd_quantity": measured.quantity,
        "neurons": sorted({s.neuron for s in measured.layers.values()}),
        "unbounded_layers": unbounded,
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
        "neurobench": model_neurobench(model, ops),
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


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _membrane_section(metrics: dict[str, Any]) -> list[str]:
    """PTD and variance per layer and model, beside the shares outside the histogram range, + warnings."""
    models = metrics["models"]
    definitions = metrics["definitions"]
    names = list(dict.fromkeys(n for m in models.values() for n in m["layers"]))
    rows, warnings = [], []
    for name in names:
        for label, model in models.items():
            layer = model["layers"].get(name)
            if layer is None:
                continue
            rows.append(
                [
                    name,
                    label,
                    fmt(layer["ptd_mean"]),
                    fmt(layer["variance_mean"]),
                    _percent(layer["below_range_share"]),
                    _percent(layer["above_range_share"]),
                    _percent(layer["ptd_peak_outside_share"]),
                ]
            )
            outside = (layer["below_range_share"] or 0.0) + (layer["above_range_share"] or 0.0)
            if outside > definitions["out_of_range_warning"]:
                low, high = layer["histogram_range"]
                warnings.append(
                    f"**WARNING ({label}, {name})**: {_percent(outside)} of the values lie outside the "
                    f"histogram range [{low:.3g}, {high:.3g}) ({_percent(layer['below_range_share'])} below, "
                    f"{_percent(layer['above_range_share'])} above): its PTD describes the in-range bars "
                    "only; the variance uses every value. Widen the range (`--hist-range`)."
                )
    quantities = sorted({m["mpd_quantity"] for m in models.values()})
    words = " / ".join(MPD_QUANTITIES[q] for q in quantities)
    header = ["layer", "model", "PTD (mean)", "variance (mean)", "below range", "above range", "peak outside"]
    return [
        "## PTD and variance per layer",
        "",
        f"Histogrammed quantity: **{words}**. "
        f"Histogram: {definitions['histogram_units']}. PTD (paper Definition 6): {definitions['ptd']}. "
        "Means over channels and steps. Variance over every finite value (in range or not). "
        "'below / above range': share of the values outside the histogram range; 'peak outside': share "
        "of the (step, channel) histograms whose below- or above-range count exceeds every in-range bar "
        "(their real peak is outside the range).",
        "",
        *_table(header, rows),
        "",
        *(line for warning in warnings for line in (warning, "")),
    ]


def _qe_section(models: dict[str, dict]) -> list[str]:
    lines = _compare("QE per layer", models, _layer_rows(models, lambda x: x["qe"]))
    lines += [QE_NOTE, ""]
    for label, model in models.items():
        kinds = ", ".join(model["neurons"])
        if model["unbounded_layers"]:
            lines += [
                f"- {label} ({kinds}): NOT comparable to Table 4: layers "
                f"{', '.join(model['unbounded_layers'])} have no lower bound on the potential.",
            ]
        else:
            lines += [f"- {label} ({kinds}): every layer's potential is bounded below or leaky."]
    return [*lines, ""]


def _energy_section(metrics: dict[str, Any]) -> list[str]:
    models = metrics["models"]
    first = next(iter(models.values()))
    estimates = metrics.get("energy_estimates", {})
    rows = [
        (f"{p} (estimate)" if p in estimates else p, lambda m, p=p: m["energy"][p]["total_j"])
        for p in first["energy"]
    ]
    lines = _compare("Energy per sample (J)", models, rows)
    sources = metrics.get("energy_sources", {})
    lines += [f"- {name}: {source}" for name, source in sources.items()]
    for note in dict.fromkeys(estimates.values()):
        lines += ["", note]
    lines += [""]
    for name, diff in metrics.get("eq11", {}).items():
        break_even = diff["break_even_ac"]
        ratio = diff["delta_ac"] / break_even if break_even > 0 else None
        vanilla = diff["vanilla_ac"]
        rows = [
            ["delta MAC (extra attention MACs)", fmt(diff["delta_mac"])],
            ["delta AC (saved synaptic ops)", fmt(diff["delta_ac"])],
            ["E_MAC x delta MAC (J)", fmt(diff["mac_cost_j"])],
            ["E_AC x delta AC (J)", fmt(diff["ac_saving_j"])],
            ["delta E (J; < 0 saves energy)", fmt(diff["delta_e_j"])],
            ["break-even delta AC = delta MAC x E_MAC / E_AC", fmt(break_even)],
            ["delta AC / break-even (> 1 saves energy)", fmt(ratio)],
            ["vanilla synaptic ops", fmt(vanilla)],
            ["delta AC, share of the vanilla ops", _percent(diff["delta_ac"] / vanilla if vanilla else None)],
            ["break-even, share of the vanilla ops", _percent(break_even / vanilla if vanilla else None)],
        ]
        verdict = "pays for" if diff["delta_e_j"] < 0 else "does NOT pay for"
        lines += [
            f"## Eq. 11 energy difference ({name})",
            "",
            *_table(["term", "value"], rows),
            "",
            f"Under {name} the attention model {verdict} its extra MACs: each extra MAC costs as much as "
            f"{fmt(break_even / diff['delta_mac']) if diff['delta_mac'] else 'n/a'} synaptic ops, so it must "
            f"save at least {fmt(break_even)} synaptic ops per sample and saves {fmt(diff['delta_ac'])}.",
            "",
        ]
    return lines


def _neurobench_section(models: dict[str, dict]) -> list[str]:
    """NeuroBench's metrics under their names, beside the paper's NASFR, with the definitions."""
    synops = [
        (f"synaptic operations: {key}", lambda m, k=key: m["neurobench"]["synaptic_operations"][k])
        for key in ("Effective_MACs", "Effective_ACs", "Dense")
    ]
    rows = [
        ("NASFR (paper, Def. 1)", lambda m: m["network"]["nasfr_paper"]),
        ("footprint (bytes)", lambda m: m["neurobench"]["footprint"]),
        ("connection sparsity", lambda m: m["neurobench"]["connection_sparsity"]),
        ("activation sparsity", lambda m: m["neurobench"]["activation_sparsity"]),
        *synops,
        ("membrane updates", lambda m: m["neurobench"]["membrane_updates"]),
    ]
    return [*_compare("NeuroBench metrics (per sample)", models, rows), NEUROBENCH_NOTE, ""]


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
        "same step, silent maps ignored; counts are means over steps. QE = mean (U - s * v_th)^2 "
        "(spike value s * v_th assumed; see QE per layer).",
        f"Membrane histograms (MPD, PTD, variance) show the "
        f"**{' / '.join(MPD_QUANTITIES[q] for q in sorted({m['mpd_quantity'] for m in models.values()}))}**.",
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
    lines += _neurobench_section(models)
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
    lines += _membrane_section(metrics)
    lines += _qe_section(models)
    lines += _energy_section(metrics)
    lines += ["## Figures", "", *(f"- `{path}`" for path in metrics["figures"]), ""]
    return "\n".join(lines)


def _spatial_layers(measured: Measurements) -> list[str]:
    return [name for name, s in measured.layers.items() if s.shape[1] * s.shape[2] > 1]


def _stem(*parts: object) -> str:
    """A file stem from parts: layer names keep their dots (figures write ``stem.png`` explicitly)."""
    return "_".join(str(part).replace("/", "-").replace(" ", "-") for part in parts)


def _figures(
    folder: Path,
    measured: dict[str, Measurements],
    metrics: dict[str, Any],
    steps: Sequence[int] | None,
    layers: Sequence[str] | None,
) -> list[str]:
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
    chosen_steps = list(steps) if steps is not None else [0]
    comparison: dict[str, dict[str, np.ndarray]] = {}
    for label, data in measured.items():
        spatial = _spatial_layers(data)
        chosen = [n for n in layers if n in spatial] if layers is not None else spatial[:1]
        for name in chosen:
            stats, layer = data.layers[name], metrics["models"][label]["layers"][name]
            nsfr = firing.n_sfr(stats.fired, data.n_samples)
            comparison.setdefault(name, {})[label] = nsfr
            note = f"{stats.nonfinite} non-finite membrane values excluded" if stats.nonfinite else ""
            order = np.argsort(firing.c_sfr(nsfr).mean(0))
            channels = sorted({int(order[-1]), int(order[len(order) // 2]), int(order[0])})
            written += plot_channel_over_time(
                nsfr,
                int(order[-1]),
                folder / _stem(label, "channel_over_time", name),
                f"{label} {name}",
                note,
            )
            for step in chosen_steps:
                written += plot_spike_feature_grid(
                    nsfr,
                    step,
                    folder / _stem(label, "spike_features", name, f"t{step}"),
                    f"{label} {name}",
                    warning=note,
                )
                written += plot_mpd(
                    stats.hist,
                    stats.edges,
                    stats.v_th,
                    np.asarray(layer["ptd"]),
                    np.asarray(layer["variance"]),
                    nsfr,
                    channels,
                    step,
                    folder / _stem(label, "mpd", name, f"t{step}"),
                    f"{label} {name}",
                    note,
                    MPD_QUANTITIES[stats.quantity],
                )
    for name, by_model in comparison.items():
        if len(by_model) == 2:
            for step in chosen_steps:
                written += plot_feature_comparison(
                    by_model,
                    step,
                    folder / _stem("comparison_spike_features", name, f"t{step}"),
                    f"Side by side, {name}",
                )
    return [str(Path(folder.name) / path.name) for path in written]


def _spiking_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, SpikingNeuron)]


def _check_features(
    models: dict[str, nn.Module], dataset: Sequence, steps: Sequence[int] | None, layers: Sequence[str] | None
) -> None:
    """Fail before measuring when a requested feature step or layer does not exist."""
    if steps is not None:
        first = dataset[0]
        frames = first[0] if isinstance(first, tuple | list) else first
        count = int(np.shape(frames)[0])
        bad = [s for s in steps if not 0 <= int(s) < count]
        if bad or not steps:
            raise AsaSnnError(
                f"analyze: feature step(s) {bad or list(steps)} do not exist; the data has T={count} steps, "
                f"valid steps are 0..{count - 1}"
            )
    if layers is not None:
        known = list(dict.fromkeys(n for m in models.values() for n in _spiking_layers(m)))
        unknown = [name for name in layers if name not in known]
        if unknown or not layers:
            raise AsaSnnError(
                f"analyze: feature layer(s) {', '.join(unknown) or '(none given)'} unknown; "
                f"spiking layers are {', '.join(known)}"
            )


def _check_spatial(measured: dict[str, Measurements], layers: Sequence[str] | None) -> None:
    if layers is None:
        return
    spatial = list(dict.fromkeys(n for m in measured.values() for n in _spatial_layers(m)))
    flat = [name for name in layers if name not in spatial]
    if flat:
        raise AsaSnnError(
            f"analyze: feature layer(s) {', '.join(flat)} have 1 x 1 maps (no spike features to draw); "
            f"layers with spatial maps are {', '.join(spatial)}"
        )


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
    quantity: str = "membrane",
    hist_spec: HistogramSpec | None = None,
    feature_steps: Sequence[int] | None = None,
    feature_layers: Sequence[str] | None = None,
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
        quantity: what the MPD histograms, PTD and variance show (:data:`MPD_QUANTITIES`):
            ``membrane`` (U before reset, paper Definition 5) or ``current`` (the input current X
            after attention, as the released code's figures).
        hist_spec: histogram range and bins in units of each layer's threshold (default
            [-2, 2) x v_th in 80 bins).
        feature_steps: steps drawn in the spike-feature and MPD figures (default [0]).
        feature_layers: spiking layers drawn (default: the first layer with spatial maps).
        progress: show progress bars.

    Returns:
        The metrics dictionary written to metrics.json.

    Raises:
        AsaSnnError: bad labels, an unknown quantity, or a feature step / layer that does not exist
            (checked before measuring, except that a layer without spatial maps is found after).
    """
    if len(labels) != 2 or labels[0] == labels[1]:
        raise AsaSnnError(f"analyze: labels must be two different names, got {labels}")
    models = (
        {labels[0]: model}
        if compare_model is None
        else dict(zip(labels, (model, compare_model), strict=True))
    )
    _check_features(models, dataset, feature_steps, feature_layers)
    spec = hist_spec or HistogramSpec()
    options = {
        "batch_size": batch_size,
        "max_samples": max_samples,
        "masks": masks,
        "progress": progress,
        "quantity": quantity,
        "hist_spec": spec,
    }
    measured = {label: measure(m, dataset, **options) for label, m in models.items()}
    _check_spatial(measured, feature_layers)
    results = {label: model_metrics(models[label], measured[label], presets, duration_s) for label in models}
    metrics: dict[str, Any] = {
        "definitions": {
            "ghost_threshold": GHOST_THRESHOLD,
            "qe_spike_value": "s * v_th (assumption; the paper does not define the spike's value)",
            "qe_note": QE_NOTE,
            "ptd": "centre of the mean of the intervals of the 3 tallest in-range bars - v_th "
            "(bars tied for the last place share it equally)",
            "mpd_quantity": f"{quantity}: {MPD_QUANTITIES[quantity]}",
            "histogram_units": f"v_th x [{spec.low}, {spec.high}) in {spec.bins} bins + under/overflow",
            "out_of_range_warning": membrane.OUT_OF_RANGE_WARNING,
            "feature_steps": list(feature_steps) if feature_steps is not None else [0],
            "feature_layers": list(feature_layers) if feature_layers is not None else "first spatial layer",
            "neurobench": NEUROBENCH_NOTE,
        },
        "models": results,
        "energy_sources": {name: p.source for name, p in presets.items()},
        "energy_estimates": {name: p.estimate for name, p in presets.items() if p.estimate},
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
        plain["figures"] = _figures(staging / "figures", measured, plain, feature_steps, feature_layers)
        (staging / "metrics.json").write_text(json.dumps(plain, indent=1))
        (staging / "report.md").write_text(render_report(plain))
    return plain
