"""``asa-snn analyze``: the redundancy analysis of one or two checkpoints on their data.

The data comes from :func:`asa_snn.train.run.load_run` (the checkpoint's own config, or another
config file), the energy models from every registered chip
(:func:`asa_snn.chips.registry.energy_presets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asa_snn.analysis.recorder import HistogramSpec
from asa_snn.analysis.report import analyze
from asa_snn.chips.registry import energy_presets
from asa_snn.devices import resolve_device
from asa_snn.errors import AsaSnnError
from asa_snn.train.data import foreground_masks
from asa_snn.train.run import load_run

PARTS = ("test", "val")


def _labels(checkpoint: Path, compare: Path | None) -> tuple[str, str]:
    """Two different names for the models: their folders, else their file names, else a and b."""
    for labels in (
        (checkpoint.parent.name or "model", compare.parent.name if compare else "other"),
        (checkpoint.stem, compare.stem if compare else "other"),
    ):
        if labels[0] != labels[1]:
            return labels
    return ("model_a", "model_b")


def parse_steps(text: str | None) -> list[int] | None:
    """``"0,10,59"`` -> [0, 10, 59] (None stays None: the default step).

    Raises:
        AsaSnnError: an entry that is not an integer (the message quotes the option's text).
    """
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise AsaSnnError(f"--feature-steps must be comma-separated integers, got {text!r}") from None


def parse_names(text: str | None) -> list[str] | None:
    """``"blocks.0.neuron,blocks.1.neuron"`` -> the names (None stays None: the default layer)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_range(text: str | None, bins: int) -> HistogramSpec | None:
    """``"-4,2"`` -> the histogram over [-4, 2) x v_th in ``bins`` bins (None: the default range).

    Raises:
        AsaSnnError: not two numbers LOW,HIGH with LOW < HIGH, or fewer than 3 bins.
    """
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise AsaSnnError(
            f"--hist-range must be LOW,HIGH in units of the threshold (e.g. -4,2), got {text!r}"
        ) from None
    return HistogramSpec(low, high, bins)


def analyze_checkpoints(
    checkpoint: str | Path,
    compare: str | Path | None,
    out_dir: str | Path,
    data: str = "test",
    labels: tuple[str, str] | None = None,
    max_samples: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    *,
    quantity: str = "membrane",
    hist_spec: HistogramSpec | None = None,
    feature_steps: Sequence[int] | None = None,
    feature_layers: Sequence[str] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Analyse ``checkpoint`` (and ``compare`` on the same samples) and write the report folder.

    Args:
        checkpoint, compare: checkpoint files (``compare`` optional, e.g. the ASA model).
        out_dir: report folder (report.md, metrics.json, figures/).
        data: ``test`` or ``val`` part of the first checkpoint's own data, or a config file / recipe
            whose test part is used.
        labels: the two models' names; None: from the file locations.
        max_samples, batch_size: samples measured and per forward pass.
        quantity: ``membrane`` (U before reset) or ``current`` (input current X after attention)
            for the MPD histograms, PTD and variance.
        hist_spec: histogram range and bins in units of each layer's threshold (None: the default).
        feature_steps, feature_layers: steps and spiking layers of the spike-feature and MPD
            figures (None: step 0 of the first spatial layer).
        device: where the models run (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); the
            statistics are accumulated on the CPU in float64 either way.

    Returns:
        The metrics written to metrics.json.
    """
    checkpoint = Path(checkpoint)
    compare = Path(compare) if compare is not None else None
    where = resolve_device(device, "analyze --device")
    run = load_run(checkpoint, None if data in PARTS else data)
    part = getattr(run.data, data if data in PARTS else "test")
    other = load_run(compare, None if data in PARTS else data).model.to(where) if compare else None
    return analyze(
        run.model.to(where),
        part,
        out_dir,
        compare_model=other,
        labels=labels or _labels(checkpoint, compare),
        masks=foreground_masks(part),
        max_samples=max_samples,
        batch_size=batch_size,
        presets=energy_presets(),
        duration_s=run.duration_s,
        quantity=quantity,
        hist_spec=hist_spec,
        feature_steps=feature_steps,
        feature_layers=feature_layers,
        progress=progress,
    )


def analyze_pair(vanilla: Path, asa: Path, out_dir: Path, device: str = "cpu") -> dict[str, Any]:
    """The demo's analysis strategy: vanilla against ASA on the vanilla run's test part (on ``device``)."""
    return analyze_checkpoints(
        vanilla, asa, out_dir, labels=("vanilla", "asa2"), progress=False, device=device
    )
