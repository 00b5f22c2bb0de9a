"""Functional core for turning event recordings into frames, and for event augmentation.

Every function takes an [N] event array of :data:`~asa_snn.data.events.EVENT_DTYPE` (times in
microseconds) and, where needed, the sensor size ``(W, H, P)``. Frames are float32 arrays of shape
[T, P, H, W] holding per-polarity event COUNTS (FACTS.md section 2: "per-polarity event counts (not
binary)"). Nothing here draws random numbers except through an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np

from asa_snn.data.events import SensorSize, check_events
from asa_snn.errors import InputFormatError


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise :class:`InputFormatError` naming ``name`` unless it is an
    integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputFormatError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_ratio(name: str, value: float) -> float:
    """Return ``value`` as float, or raise :class:`InputFormatError` naming ``name`` unless it lies
    in [0, 1]."""
    if not (isinstance(value, (int, float, np.floating)) and 0.0 <= float(value) <= 1.0):
        raise InputFormatError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def count_events(
    step: np.ndarray, channel: np.ndarray, y: np.ndarray, x: np.ndarray, shape: tuple[int, int, int, int]
) -> np.ndarray:
    """Frames of event counts: ``frames[step, channel, y, x] += 1`` for every event inside ``shape``.

    Args:
        step, channel, y, x: int [N] frame coordinates of each event; events whose step lies outside
            [0, T) are ignored (the other coordinates must lie inside the frame).
        shape: (T, C, H, W).

    Returns:
        float32 [T, C, H, W].
    """
    n_steps, channels, height, width = shape
    keep = (step >= 0) & (step < n_steps)
    flat = ((step[keep].astype(np.int64) * channels + channel[keep]) * height + y[keep]) * width + x[keep]
    counts = np.bincount(flat.astype(np.int64), minlength=n_steps * channels * height * width)
    return counts.reshape(shape).astype(np.float32)


def _bin_counts(events: np.ndarray, step: np.ndarray, sensor_size: SensorSize, n_steps: int) -> np.ndarray:
    """:func:`count_events` of an [N] event array checked against ``sensor_size`` (W, H, P)."""
    width, height, polarities = sensor_size
    return count_events(step, events["p"], events["y"], events["x"], (n_steps, polarities, height, width))


def to_frames(
    events: np.ndarray,
    sensor_size: SensorSize,
    dt_us: int,
    n_steps: int,
    t_start_us: int | None = None,
) -> np.ndarray:
    """Bin events into ``n_steps`` fixed time windows of ``dt_us`` microseconds.

    Window k holds the events with ``t0 + k*dt_us <= t < t0 + (k+1)*dt_us``; events before ``t0`` or
    at/after ``t0 + n_steps*dt_us`` are ignored.

    Args:
        events: [N] event array.
        sensor_size: (W, H, P).
        dt_us: window length in microseconds (> 0).
        n_steps: number of windows T (>= 1).
        t_start_us: t0 in microseconds; default: the first event's timestamp (0 for no events).

    Returns:
        float32 [T, P, H, W]: per-polarity event counts; all zeros for an empty recording.
    """
    dt_us = check_positive_int("dt_us", dt_us)
    n_steps = check_positive_int("n_steps", n_steps)
    check_events(events, sensor_size)
    if t_start_us is None:
        t_start_us = int(events["t"][0]) if len(events) else 0
    step = np.floor_divide(events["t"] - np.int64(t_start_us), dt_us)
    return _bin_counts(events, step, sensor_size, n_steps)


def equal_count_sizes(n_events: int, n_steps: int) -> np.ndarray:
    """Number of events in each of ``n_steps`` slices of (nearly) equal count.

    Each slice gets ``n_events // n_steps`` events and the remainder ``n_events % n_steps`` is
    handed out one event each to the FIRST slices, so sizes differ by at most one.

    Returns:
        int64 [n_steps], summing to ``n_events``.
    """
    n_steps = check_positive_int("n_steps", n_steps)
    base, remainder = divmod(int(n_events), n_steps)
    return np.full(n_steps, base, dtype=np.int64) + (np.arange(n_steps) < remainder)


def to_frames_equal_count(events: np.ndarray, sensor_size: SensorSize, n_steps: int) -> np.ndarray:
    """Split the recording, in time order, into ``n_steps`` slices of (nearly) equal event count.

    This is the "frames of equal event count" integration of the 5-layer Gesture run (FACTS.md
    section 2, 20 frames). Slice sizes come from :func:`equal_count_sizes`: the remainder of
    N / T goes one event each to the first slices. With fewer events than slices, the last slices
    are empty.

    Args:
        events: [N] event array.
        sensor_size: (W, H, P).
        n_steps: number of slices T (>= 1).

    Returns:
        float32 [T, P, H, W]: per-polarity event counts.
    """
    sizes = equal_count_sizes(len(events), n_steps)
    check_events(events, sensor_size)
    step = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return _bin_counts(events, step, sensor_size, len(sizes))


def downsample(events: np.ndarray, sensor_size: SensorSize, factor: int) -> tuple[np.ndarray, SensorSize]:
    """Bin coordinates by an integer factor: x -> x // factor, y -> y // factor.

    The new sensor is ``(ceil(W/factor), ceil(H/factor), P)``; the paper's 128 -> 32 px is factor 4.
    No event is dropped, so frames of the result hold the summed counts of each factor x factor block.

    Returns:
        (events [N], new sensor size).
    """
    factor = check_positive_int("factor", factor)
    check_events(events, sensor_size)
    width, height, polarities = sensor_size
    out = events.copy()
    out["x"] //= factor
    out["y"] //= factor
    return out, (math.ceil(width / factor), math.ceil(height / factor), polarities)


def random_time_crop(events: np.ndarray, duration_us: int, rng: np.random.Generator) -> np.ndarray:
    """Keep the events of a uniformly random window ``[s, s + duration_us)`` inside the recording.

    The start s is drawn uniformly from the integers in ``[t_first, t_last - duration_us + 1]``; a
    recording whose span ``t_last - t_first`` is shorter than ``duration_us`` is returned whole.

    Args:
        events: [N] event array, times in microseconds.
        duration_us: window length in microseconds (> 0).
        rng: source of randomness.
    """
    duration_us = check_positive_int("duration_us", duration_us)
    if len(events) == 0 or events["t"][-1] - events["t"][0] < duration_us:
        return events.copy()
    start = events["t"][0] + rng.integers(0, events["t"][-1] - events["t"][0] - duration_us + 2)
    lo, hi = np.searchsorted(events["t"], [start, start + duration_us], side="left")
    return events[lo:hi].copy()


def drop_random_events(events: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Remove ``round(ratio * N)`` events chosen uniformly without replacement (order kept)."""
    ratio = check_ratio("event_ratio", ratio)
    n_drop = round(ratio * len(events))
    keep = np.ones(len(events), dtype=bool)
    keep[rng.choice(len(events), size=n_drop, replace=False)] = False
    return events[keep]


def drop_time_interval(events: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Remove the events of a random interval ``[s, s + L)``, L = round(ratio * span) microseconds.

    span = t_last - t_first; s is uniform in ``[t_first, t_last - L]`` so the interval lies inside
    the recording.
    """
    ratio = check_ratio("time_ratio", ratio)
    if len(events) == 0:
        return events.copy()
    span = int(events["t"][-1] - events["t"][0])
    length = round(ratio * span)
    start = int(events["t"][0]) + int(rng.integers(0, span - length + 1))
    t = events["t"]
    return events[(t < start) | (t >= start + length)]


def drop_area(
    events: np.ndarray, sensor_size: SensorSize, ratio: float, rng: np.random.Generator
) -> np.ndarray:
    """Remove the events inside a random box covering about ``ratio`` of the sensor area.

    The box is ``round(W*sqrt(ratio))`` x ``round(H*sqrt(ratio))`` pixels, placed uniformly so it lies
    fully inside the sensor.
    """
    ratio = check_ratio("area_ratio", ratio)
    width, height, _ = sensor_size
    box_w, box_h = round(width * math.sqrt(ratio)), round(height * math.sqrt(ratio))
    x0 = int(rng.integers(0, width - box_w + 1))
    y0 = int(rng.integers(0, height - box_h + 1))
    inside = (
        (events["x"] >= x0) & (events["x"] < x0 + box_w) & (events["y"] >= y0) & (events["y"] < y0 + box_h)
    )
    return events[~inside]


def event_drop(
    events: np.ndarray,
    sensor_size: SensorSize,
    rng: np.random.Generator,
    event_ratio: float = 0.2,
    time_ratio: float = 0.2,
    area_ratio: float = 0.2,
    random_ratios: bool = False,
) -> np.ndarray:
    """EventDrop augmentation (Gu et al., IJCAI 2021): one of four modes, each with chance 1/4.

    Modes: keep every event; :func:`drop_random_events` (``event_ratio`` of the events);
    :func:`drop_time_interval` (``time_ratio`` of the recording's span); :func:`drop_area`
    (a box of ``area_ratio`` of the sensor area).

    With ``random_ratios`` the three ratios are maxima: the chosen mode's ratio is drawn per call
    (per sample) as r ~ U[0, ratio) from ``rng``, after the mode. The released Gait training draws
    its ratios per sample too (from {0.1, ..., 0.9} for time and events, a box side of {1, ..., 19}/20
    of the sensor for area; FACTS.md section 2, BICLab/ASA-SNN ``datasets/event_drop.py``).

    Args:
        events: [N] event array, times in microseconds.
        sensor_size: (W, H, P).
        rng: source of randomness (chooses the mode, its ratio when random, and its placement).
        event_ratio, time_ratio, area_ratio: fractions in [0, 1] (maxima when ``random_ratios``).
        random_ratios: draw each sample's ratio uniformly below the given one.

    Returns:
        [M <= N] event array, a subset of ``events`` in the same order.
    """
    event_ratio = check_ratio("event_ratio", event_ratio)
    time_ratio = check_ratio("time_ratio", time_ratio)
    area_ratio = check_ratio("area_ratio", area_ratio)
    check_events(events, sensor_size)

    def ratio(maximum: float) -> float:
        return float(rng.uniform(0.0, maximum)) if random_ratios else maximum

    modes = (
        lambda: events.copy(),
        lambda: drop_random_events(events, ratio(event_ratio), rng),
        lambda: drop_time_interval(events, ratio(time_ratio), rng),
        lambda: drop_area(events, sensor_size, ratio(area_ratio), rng),
    )
    return modes[int(rng.integers(0, len(modes)))]()


def window_starts(duration_us: int, window_us: int, n_windows: int) -> np.ndarray:
    """Start offsets of the multi-window test protocol (FACTS.md section 2: 10 windows per recording).

    ``n_windows`` windows of ``window_us`` spread evenly over a recording of ``duration_us``: start_k =
    floor(k * (duration_us - window_us) / (n_windows - 1)), so the first starts at 0 and the last ends
    at the end. One window starts at 0; a recording shorter than a window has all windows at 0.

    Returns:
        int64 [n_windows], offsets in microseconds from the recording's first timestamp.
    """
    window_us = check_positive_int("window_us", window_us)
    n_windows = check_positive_int("n_windows", n_windows)
    duration_us = check_positive_int("duration_us", duration_us, minimum=0)
    slack = max(duration_us - window_us, 0)
    if n_windows == 1:
        return np.zeros(1, dtype=np.int64)
    return np.arange(n_windows, dtype=np.int64) * slack // (n_windows - 1)


def majority_vote(window_predictions: np.ndarray, label: int) -> bool:
    """True when MORE than half of a recording's windows predict ``label`` (exactly half is False).

    Args:
        window_predictions: int [N_windows], the predicted class of each window.
        label: the recording's true class.
    """
    predictions = np.asarray(window_predictions)
    if predictions.ndim != 1 or predictions.size == 0:
        raise InputFormatError(
            f"window_predictions must be a non-empty 1-D array, got shape {predictions.shape}"
        )
    return bool(2 * int(np.count_nonzero(predictions == label)) > predictions.size)


__all__ = [
    "check_positive_int",
    "check_ratio",
    "count_events",
    "downsample",
    "drop_area",
    "drop_random_events",
    "drop_time_interval",
    "equal_count_sizes",
    "event_drop",
    "majority_vote",
    "random_time_crop",
    "to_frames",
    "to_frames_equal_count",
    "window_starts",
]
