"""Summaries and PNG previews of event recordings (what ``asa-snn data inspect`` prints and draws)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from asa_snn.data.events import MAX_SENSOR_SIDE, EventStream
from asa_snn.errors import AsaSnnError


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


PREVIEW_MAX_SIDE = 1024
"""Most image pixels per side :func:`render_preview` draws (the PNG is 600 pixels wide)."""

MAX_ASPECT = 4.0
"""The drawn figure is at most this many times taller than wide, or wider than tall."""


def preview_shape(stream: EventStream, max_side: int = MAX_SENSOR_SIDE) -> tuple[int, int, int]:
    """(rows, columns, bin) of the image :func:`accumulate` builds for ``stream``.

    The image covers only the part of the sensor the events span, from the origin: max y + 1
    rows and max x + 1 columns of pixels (1 x 1 without events), never the sensor size a file
    declares. When that is more than ``max_side`` pixels on a side, ``bin`` x ``bin`` sensor
    pixels share one image pixel, with ``bin`` the smallest factor that fits both sides.
    """
    if max_side < 1:
        raise AsaSnnError(f"preview max_side is {max_side}; expected an integer >= 1")
    events = stream.events
    height = int(events["y"].max()) + 1 if len(events) else 1
    width = int(events["x"].max()) + 1 if len(events) else 1
    factor = -(-max(height, width) // max_side)
    return -(-height // factor), -(-width // factor), factor


def accumulate(stream: EventStream, max_side: int = MAX_SENSOR_SIDE) -> np.ndarray:
    """Signed event image: ON events (p = 1) count +1, every other polarity -1.

    Args:
        stream: the events.
        max_side: most image pixels per side (:func:`preview_shape` bins the sensor to fit).

    Returns:
        int64 array [rows, columns] of :func:`preview_shape`: net events (ON - OFF) per image
        pixel, row 0 at the top (y = 0), each pixel ``bin`` x ``bin`` sensor pixels. Memory is
        bounded by ``max_side ** 2`` and the events the stream really holds, not by its sensor size.
    """
    rows, columns, factor = preview_shape(stream, max_side)
    events = stream.events
    index = (events["y"].astype(np.int64) // factor) * columns + events["x"].astype(np.int64) // factor
    on = events["p"] == 1
    size = rows * columns
    counts = np.bincount(index[on], minlength=size) - np.bincount(index[~on], minlength=size)
    return counts.astype(np.int64).reshape(rows, columns)


def render_preview(stream: EventStream, path: str | Path) -> Path:
    """Draw the accumulated events of ``stream`` (ON red, OFF blue) as a PNG at ``path``.

    Only the sensor area the events span is drawn (:func:`preview_shape`, at most
    :data:`PREVIEW_MAX_SIDE` image pixels per side), in a figure at most :data:`MAX_ASPECT` times
    taller than wide or wider than tall, so a file declaring a huge or degenerate sensor cannot
    make the preview allocate for it. Axes are in sensor pixels, y down from the top.

    The image is written to a temporary file beside ``path`` and moved into place, so a
    failed render never leaves a half-written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    image = accumulate(stream, PREVIEW_MAX_SIDE)
    rows, columns, factor = preview_shape(stream, PREVIEW_MAX_SIDE)
    limit = max(1, int(np.percentile(np.abs(image[image != 0]), 99))) if np.any(image) else 1
    aspect = min(MAX_ASPECT, max(1 / MAX_ASPECT, rows / columns))
    fig, ax = plt.subplots(figsize=(6, 6 * aspect + 0.6))
    extent = (-0.5, columns * factor - 0.5, rows * factor - 0.5, -0.5)  # axes in sensor pixels
    shown = ax.imshow(
        image, cmap="bwr", vmin=-limit, vmax=limit, interpolation="nearest", extent=extent, aspect="auto"
    )
    duration_ms = stream.duration_us / 1000
    binned = f", {factor}x{factor} pixels per cell" if factor > 1 else ""
    ax.set_title(f"{Path(stream.source).name}\n{len(stream):,} events over {duration_ms:.1f} ms{binned}")
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
