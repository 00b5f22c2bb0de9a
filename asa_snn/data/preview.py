"""Summaries and PNG previews of event recordings (what ``asa-snn data inspect`` prints and draws)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from asa_snn.data.events import EventStream


def summarize(stream: EventStream) -> dict[str, object]:
    """Plain-data summary of a recording.

    Returns a dict with ``source``, ``sensor_size`` (W, H, P), ``events`` (count),
    ``duration_us`` (first to last event, microseconds), ``rate_hz`` (events per second),
    ``t_first_us`` / ``t_last_us`` and ``polarity_counts`` (events per polarity index).
    """
    events = stream.events
    return {
        "source": stream.source,
        "sensor_size": list(stream.sensor_size),
        "events": len(events),
        "duration_us": stream.duration_us,
        "rate_hz": stream.rate_hz,
        "t_first_us": int(events["t"][0]) if len(events) else None,
        "t_last_us": int(events["t"][-1]) if len(events) else None,
        "polarity_counts": np.bincount(events["p"], minlength=stream.sensor_size[2]).tolist(),
    }


def accumulate(stream: EventStream) -> np.ndarray:
    """Signed event image [H, W]: ON events (p = 1) count +1, every other polarity -1."""
    width, height, _ = stream.sensor_size
    events = stream.events
    sign = np.where(events["p"] == 1, 1, -1)
    image = np.zeros((height, width), dtype=np.int64)
    np.add.at(image, (events["y"], events["x"]), sign)
    return image


def render_preview(stream: EventStream, path: str | Path) -> Path:
    """Draw the accumulated events of ``stream`` (ON red, OFF blue) as a PNG at ``path``.

    The image is written to a temporary file beside ``path`` and moved into place, so a
    failed render never leaves a half-written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    image = accumulate(stream)
    limit = max(1, int(np.percentile(np.abs(image[image != 0]), 99))) if np.any(image) else 1
    width, height, _ = stream.sensor_size
    fig, ax = plt.subplots(figsize=(6, 6 * height / max(width, 1) + 0.6))
    shown = ax.imshow(image, cmap="bwr", vmin=-limit, vmax=limit, interpolation="nearest")
    duration_ms = stream.duration_us / 1000
    ax.set_title(f"{Path(stream.source).name}\n{len(stream):,} events over {duration_ms:.1f} ms")
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    fig.colorbar(shown, ax=ax, label="net events per pixel (ON - OFF)", shrink=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
