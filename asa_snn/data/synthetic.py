"""The embedded default dataset: procedurally generated DVS-like recordings of a moving object.

Each class is a motion strategy (:class:`Slide`, :class:`Orbit`, :class:`Expand`) that draws a
:class:`Scene` with per-sample jitter of start position, speed and size. A scene gives the signed
distance ``d(t, x, y)`` from the object's edge (negative inside); the pixel intensity is the
anti-aliased silhouette on a dark background,

    I(t, x, y) = b + clip(0.5 - d(t, x, y), 0, 1),      b = ``background_intensity``,

rendered on a grid of ``render_step_us`` sub-steps. Events follow a level-crossing model of the DVS
pixel: with the quantised log intensity ``n(t) = floor(log I(t) / C)`` (C = ``contrast_threshold``),
a pixel emits ``|n(t_j+1) - n(t_j)|`` events between sub-steps j and j+1, ON (p = 1) when the
intensity rose (the object's leading edge) and OFF (p = 0) when it fell (the trailing edge), at
times drawn uniformly inside the sub-step. Background events are added on top: uniform noise at
``noise_rate_hz`` per pixel (random polarity) and ``n_hot_pixels`` hot pixels at
``hot_pixel_rate_hz`` each. With the defaults, background events are about 30 % of all events,
enough for a vanilla SNN's feature maps to fire on the background.

Sample i of a split is generated from ``(seed, split, i)`` alone; the hot-pixel positions depend
on ``seed`` only (they belong to the simulated sensor, shared by all splits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from asa_snn.data.events import EventStream, SensorSize, make_events
from asa_snn.data.frames import check_positive_int
from asa_snn.data.transforms import ToFrames
from asa_snn.errors import InputFormatError

SPLITS = ("train", "val", "test")
"""Split names; each gets its own random stream."""


class Scene(Protocol):
    """One sample's object path: ``distance(t, x, y)`` -> signed distance [S, H, W] in pixels from
    the object's edge (negative inside), for t [S] a fraction of the recording's duration in [0, 1]
    and pixel-centre coordinates x [W], y [H]."""

    def distance(self, t: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SlidingSquare:
    """An axis-aligned square of half side ``half_size`` px whose centre moves linearly from
    ``start`` (x, y) by ``shift`` (dx, dy) px over the recording: c(t) = start + t * shift."""

    start: tuple[float, float]
    shift: tuple[float, float]
    half_size: float

    def distance(self, t: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cx = self.start[0] + t[:, None, None] * self.shift[0]
        cy = self.start[1] + t[:, None, None] * self.shift[1]
        return np.maximum(np.abs(x[None, None, :] - cx), np.abs(y[None, :, None] - cy)) - self.half_size


@dataclass(frozen=True)
class OrbitingDisk:
    """A disk of ``radius`` px whose centre circles ``centre`` at ``orbit_radius`` px, starting at
    angle ``phase`` and turning ``turns`` revolutions over the recording (angle increases, which is
    clockwise on screen with y pointing down)."""

    centre: tuple[float, float]
    orbit_radius: float
    phase: float
    turns: float
    radius: float

    def distance(self, t: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        angle = self.phase + 2 * math.pi * self.turns * t[:, None, None]
        cx = self.centre[0] + self.orbit_radius * np.cos(angle)
        cy = self.centre[1] + self.orbit_radius * np.sin(angle)
        return np.hypot(x[None, None, :] - cx, y[None, :, None] - cy) - self.radius


@dataclass(frozen=True)
class ExpandingRing:
    """A ring of half width ``half_width`` px around ``centre`` whose radius grows linearly from
    ``radius_start`` to ``radius_end`` px over the recording."""

    centre: tuple[float, float]
    radius_start: float
    radius_end: float
    half_width: float

    def distance(self, t: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        radius = self.radius_start + (self.radius_end - self.radius_start) * t[:, None, None]
        r = np.hypot(x[None, None, :] - self.centre[0], y[None, :, None] - self.centre[1])
        return np.abs(r - radius) - self.half_width


class Motion(Protocol):
    """A class of the dataset: ``draw`` makes one jittered :class:`Scene` for a W x H sensor."""

    name: str

    def draw(self, rng: np.random.Generator, width: int, height: int) -> Scene: ...


@dataclass(frozen=True)
class Slide:
    """A square sliding along unit ``direction`` (dx, dy; y points down). Half side 2.5-4 px, path
    length 45-70 % of the sensor, path midpoint within +-15 % of the centre (sizes for 32 px, scaled
    with the sensor)."""

    name: str
    direction: tuple[float, float]

    def draw(self, rng: np.random.Generator, width: int, height: int) -> Scene:
        scale = min(width, height) / 32
        norm = math.hypot(*self.direction)
        dx, dy = self.direction[0] / norm, self.direction[1] / norm
        length = rng.uniform(0.45, 0.7) * min(width, height)
        mid_x = (width - 1) / 2 + rng.uniform(-0.15, 0.15) * width
        mid_y = (height - 1) / 2 + rng.uniform(-0.15, 0.15) * height
        return SlidingSquare(
            start=(mid_x - dx * length / 2, mid_y - dy * length / 2),
            shift=(dx * length, dy * length),
            half_size=rng.uniform(2.5, 4.0) * scale,
        )


@dataclass(frozen=True)
class Orbit:
    """A disk (radius 2.5-3.5 px) orbiting the centre (+-2 px) at 6-9 px for 0.75-1.25 turns."""

    name: str

    def draw(self, rng: np.random.Generator, width: int, height: int) -> Scene:
        scale = min(width, height) / 32
        return OrbitingDisk(
            centre=(
                (width - 1) / 2 + rng.uniform(-2, 2) * scale,
                (height - 1) / 2 + rng.uniform(-2, 2) * scale,
            ),
            orbit_radius=rng.uniform(6, 9) * scale,
            phase=rng.uniform(0, 2 * math.pi),
            turns=rng.uniform(0.75, 1.25),
            radius=rng.uniform(2.5, 3.5) * scale,
        )


@dataclass(frozen=True)
class Expand:
    """A ring (half width 0.75-1.25 px) around the centre (+-3 px) growing from 1-3 px to 10-14 px."""

    name: str

    def draw(self, rng: np.random.Generator, width: int, height: int) -> Scene:
        scale = min(width, height) / 32
        return ExpandingRing(
            centre=(
                (width - 1) / 2 + rng.uniform(-3, 3) * scale,
                (height - 1) / 2 + rng.uniform(-3, 3) * scale,
            ),
            radius_start=rng.uniform(1, 3) * scale,
            radius_end=rng.uniform(10, 14) * scale,
            half_width=rng.uniform(0.75, 1.25) * scale,
        )


MOTIONS: tuple[Motion, ...] = (
    Slide("square_left", (-1.0, 0.0)),
    Slide("square_right", (1.0, 0.0)),
    Slide("square_up", (0.0, -1.0)),
    Slide("square_down", (0.0, 1.0)),
    Slide("square_diagonal", (1.0, 1.0)),
    Orbit("disk_orbit"),
    Expand("ring_expanding"),
)
"""All motion classes, in label order; a config with ``n_classes = k`` uses the first k."""


@dataclass(frozen=True)
class SyntheticDVSConfig:
    """Parameters of the synthetic dataset.

    Args:
        sensor_size: (W, H, P); P must be 2 (OFF = 0, ON = 1).
        n_classes: number of motion classes, the first ``n_classes`` of :data:`MOTIONS` (2..7).
        duration_us: length of every recording in microseconds; events have 0 <= t < duration_us.
        n_steps: number of frames T of the default frame binning.
        dt_us: frame length in microseconds; None: ``duration_us // n_steps``.
        render_step_us: sub-step of the brightness simulation in microseconds.
        contrast_threshold: C, the log-intensity change per event (> 0).
        background_intensity: b, scene brightness where there is no object (object adds 1), > 0.
        noise_rate_hz: uniform background events per pixel per second (both polarities together).
        n_hot_pixels: number of hot pixels (positions fixed by ``seed``).
        hot_pixel_rate_hz: events per second of each hot pixel.
        seed: base seed of the whole dataset.
    """

    sensor_size: SensorSize = (32, 32, 2)
    n_classes: int = len(MOTIONS)
    duration_us: int = 320_000
    n_steps: int = 16
    dt_us: int | None = None
    render_step_us: int = 2_000
    contrast_threshold: float = 0.5
    background_intensity: float = 0.1
    noise_rate_hz: float = 2.0
    n_hot_pixels: int = 3
    hot_pixel_rate_hz: float = 150.0
    seed: int = 0

    def __post_init__(self) -> None:
        sensor_size = tuple(int(v) for v in self.sensor_size)
        if len(sensor_size) != 3 or min(sensor_size[:2]) < 4 or sensor_size[2] != 2:
            raise InputFormatError(
                f"SyntheticDVSConfig.sensor_size must be (W, H, 2) with W, H >= 4, got {self.sensor_size}"
            )
        object.__setattr__(self, "sensor_size", sensor_size)
        if not 2 <= self.n_classes <= len(MOTIONS):
            raise InputFormatError(
                f"SyntheticDVSConfig.n_classes must be in [2, {len(MOTIONS)}], got {self.n_classes}"
            )
        for name in ("duration_us", "n_steps", "render_step_us"):
            check_positive_int(f"SyntheticDVSConfig.{name}", getattr(self, name))
        if self.dt_us is not None:
            check_positive_int("SyntheticDVSConfig.dt_us", self.dt_us)
        check_positive_int("SyntheticDVSConfig.n_hot_pixels", self.n_hot_pixels, minimum=0)
        if self.n_hot_pixels > sensor_size[0] * sensor_size[1]:
            raise InputFormatError(
                f"SyntheticDVSConfig.n_hot_pixels={self.n_hot_pixels} exceeds the {sensor_size[0]}x"
                f"{sensor_size[1]} pixels of the sensor"
            )
        for name in ("contrast_threshold", "background_intensity"):
            if not getattr(self, name) > 0:
                raise InputFormatError(f"SyntheticDVSConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("noise_rate_hz", "hot_pixel_rate_hz"):
            if not getattr(self, name) >= 0:
                raise InputFormatError(f"SyntheticDVSConfig.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def frame_dt_us(self) -> int:
        """Frame length in microseconds: ``dt_us`` or ``duration_us // n_steps``."""
        return self.dt_us if self.dt_us is not None else max(self.duration_us // self.n_steps, 1)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in label order."""
        return tuple(motion.name for motion in MOTIONS[: self.n_classes])

    def render_times_us(self) -> np.ndarray:
        """int64 [S+1]: the sub-step grid 0 = t_0 < ... < t_S = duration_us of the simulation."""
        n_sub = max(round(self.duration_us / self.render_step_us), 1)
        return np.round(np.linspace(0, self.duration_us, n_sub + 1)).astype(np.int64)

    def pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(x [W], y [H]) pixel coordinates as floats."""
        return np.arange(self.sensor_size[0], dtype=np.float64), np.arange(
            self.sensor_size[1], dtype=np.float64
        )


@dataclass(frozen=True)
class SyntheticSample:
    """One generated recording: the label, the scene it was rendered from, and its events split by
    origin ([N] arrays of EVENT_DTYPE, times in microseconds)."""

    label: int
    scene: Scene
    object_events: np.ndarray
    background_events: np.ndarray

    @property
    def events(self) -> np.ndarray:
        """All events, sorted by time (stable: object events first on equal timestamps)."""
        merged = np.concatenate([self.object_events, self.background_events])
        return merged[np.argsort(merged["t"], kind="stable")]


def object_events(scene: Scene, config: SyntheticDVSConfig, rng: np.random.Generator) -> np.ndarray:
    """Simulate the DVS pixels watching ``scene`` (level-crossing model in the module docstring).

    Returns:
        [N] events sorted by time, 0 <= t < duration_us; ``rng`` only places events in their sub-step.
    """
    times = config.render_times_us()
    x, y = config.pixel_centres()
    intensity = config.background_intensity + np.clip(
        0.5 - scene.distance(times / config.duration_us, x, y), 0, 1
    )
    level = np.floor(np.log(intensity) / config.contrast_threshold).astype(np.int64)
    change = np.diff(level, axis=0)
    step, row, col = np.nonzero(change)
    signed = change[step, row, col]
    counts = np.abs(signed)
    step = np.repeat(step, counts)
    t = times[step] + np.floor(rng.random(len(step)) * (times[step + 1] - times[step])).astype(np.int64)
    events = make_events(t, np.repeat(col, counts), np.repeat(row, counts), np.repeat(signed > 0, counts))
    return events[np.argsort(events["t"], kind="stable")]


def hot_pixels(config: SyntheticDVSConfig) -> np.ndarray:
    """int64 [n_hot_pixels, 2]: (x, y) of the hot pixels, fixed by ``config.seed`` alone."""
    width, height, _ = config.sensor_size
    flat = np.random.default_rng([config.seed, len(SPLITS)]).choice(
        width * height, size=config.n_hot_pixels, replace=False
    )
    return np.stack([flat % width, flat // width], axis=1).astype(np.int64)


def background_events(config: SyntheticDVSConfig, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise (Poisson count with mean ``noise_rate_hz * W * H * duration``) plus hot-pixel
    events (Poisson, mean ``hot_pixel_rate_hz * duration`` each); uniform times, random polarity.

    Returns:
        [N] events sorted by time, 0 <= t < duration_us.
    """
    width, height, _ = config.sensor_size
    seconds = config.duration_us * 1e-6
    n_noise = rng.poisson(config.noise_rate_hz * width * height * seconds)
    hot = hot_pixels(config)
    hot_counts = rng.poisson(config.hot_pixel_rate_hz * seconds, size=len(hot))
    x = np.concatenate([rng.integers(0, width, n_noise), np.repeat(hot[:, 0], hot_counts)])
    y = np.concatenate([rng.integers(0, height, n_noise), np.repeat(hot[:, 1], hot_counts)])
    t = rng.integers(0, config.duration_us, len(x))
    events = make_events(t, x, y, rng.integers(0, 2, len(x)))
    return events[np.argsort(events["t"], kind="stable")]


def generate_sample(config: SyntheticDVSConfig, split: str, index: int) -> SyntheticSample:
    """Generate sample ``index`` of ``split`` from ``(config.seed, split, index)`` alone.

    The label is ``index % n_classes`` (balanced classes).
    """
    if split not in SPLITS:
        raise InputFormatError(f"split must be one of {SPLITS}, got {split!r}")
    label = index % config.n_classes
    scene_rng, timing_rng, noise_rng = (
        np.random.default_rng(child)
        for child in np.random.SeedSequence([config.seed, SPLITS.index(split), index]).spawn(3)
    )
    width, height, _ = config.sensor_size
    scene = MOTIONS[label].draw(scene_rng, width, height)
    return SyntheticSample(
        label, scene, object_events(scene, config, timing_rng), background_events(config, noise_rng)
    )


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of [T, H, W] masks by a (2r+1) x (2r+1) square, per frame."""
    for _ in range(radius):
        padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
        height, width = mask.shape[1:]
        mask = np.zeros_like(mask)
        for dy in range(3):
            for dx in range(3):
                mask |= padded[:, dy : dy + height, dx : dx + width]
    return mask


def foreground_masks(
    scene: Scene, config: SyntheticDVSConfig, dt_us: int, n_steps: int, dilate_px: int = 1
) -> np.ndarray:
    """Where the object is in each frame window [k*dt_us, (k+1)*dt_us) (t_start = 0, microseconds).

    A pixel is foreground in frame k when the object covers any part of it (I > b) at either end
    of a simulation sub-step that overlaps the window, so every object event of frame k lies
    inside mask k; the masks are then dilated by ``dilate_px`` pixels.

    Returns:
        bool [T, H, W]; windows after the recording's end are all False.
    """
    check_positive_int("dt_us", dt_us)
    check_positive_int("n_steps", n_steps)
    check_positive_int("dilate_px", dilate_px, minimum=0)
    times = config.render_times_us()
    x, y = config.pixel_centres()
    covered = scene.distance(times / config.duration_us, x, y) < 0.5
    sub_step_covered = covered[:-1] | covered[1:]
    starts = np.arange(n_steps, dtype=np.int64) * dt_us
    masks = np.stack(
        [sub_step_covered[(times[:-1] < start + dt_us) & (times[1:] > start)].any(axis=0) for start in starts]
    )
    return _dilate(masks, dilate_px)


class SyntheticDVS(Dataset):
    """Torch dataset of synthetic DVS recordings (module docstring), generated lazily and cached.

    Args:
        n_samples: number of recordings.
        config: generator parameters (default: :class:`SyntheticDVSConfig`).
        split: "train", "val" or "test"; each split has its own random stream.
        transform: EventStream -> float32 frames [T, P, H, W]; default: :class:`ToFrames` with the
            config's ``frame_dt_us`` and ``n_steps``, starting at t = 0 (aligned with the masks).

    Items: ``(frames: torch.FloatTensor [T, P, H, W], label: int)``.
    """

    def __init__(
        self,
        n_samples: int,
        config: SyntheticDVSConfig | None = None,
        split: str = "train",
        transform: Callable[[EventStream], np.ndarray] | None = None,
    ) -> None:
        self.n_samples = check_positive_int("n_samples", n_samples, minimum=0)
        self.config = SyntheticDVSConfig() if config is None else config
        if split not in SPLITS:
            raise InputFormatError(f"SyntheticDVS split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.transform = transform or ToFrames(self.config.frame_dt_us, self.config.n_steps, t_start_us=0)
        self._cache: dict[int, SyntheticSample] = {}

    def __len__(self) -> int:
        return self.n_samples

    @property
    def labels(self) -> np.ndarray:
        """int64 [n_samples]: the label of every sample (no generation needed)."""
        return np.arange(self.n_samples, dtype=np.int64) % self.config.n_classes

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in label order."""
        return self.config.classes

    @property
    def sensor_size(self) -> SensorSize:
        """(W, H, P) of every recording."""
        return self.config.sensor_size

    def sample(self, index: int) -> SyntheticSample:
        """The generated sample ``index`` (cached after the first call)."""
        if not 0 <= index < self.n_samples:
            raise IndexError(f"SyntheticDVS index {index} out of range for {self.n_samples} samples")
        if index not in self._cache:
            self._cache[index] = generate_sample(self.config, self.split, index)
        return self._cache[index]

    def recording(self, index: int) -> EventStream:
        """Events of sample ``index`` (object and background merged) with the sensor size."""
        return EventStream(self.sample(index).events, self.sensor_size, f"synthetic:{self.split}:{index}")

    def foreground_masks(
        self, index: int, dt_us: int | None = None, n_steps: int | None = None, dilate_px: int = 1
    ) -> np.ndarray:
        """bool [T, H, W] object masks of sample ``index`` for frames of ``dt_us`` (default: the
        config's ``frame_dt_us``) and ``n_steps`` (default: the config's), starting at t = 0."""
        return foreground_masks(
            self.sample(index).scene,
            self.config,
            self.config.frame_dt_us if dt_us is None else dt_us,
            self.config.n_steps if n_steps is None else n_steps,
            dilate_px,
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames = self.transform(self.recording(index))
        return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)), int(self.labels[index])
