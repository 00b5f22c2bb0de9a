"""Datasets for training: the splits, the frame pipelines and the data fingerprint.

The training split of a dataset is divided into training and validation parts by the stratified
:func:`~asa_snn.data.datasets.split_indices` (seed ``train.seed``); validation picks the best
model, the test split is only evaluated at the end. Training frames are augmented with seeds from
``(seed, epoch, sample)`` (:func:`sample_seed`): the augmentation of a sample in an epoch depends on
nothing else, neither what ran before it (a resumed run sees the same frames) nor which
DataLoader worker or torchrun rank computes it.

With ``data.cache_dir`` set, frames are kept in an on-disk :class:`~asa_snn.data.frame_cache.FrameCache`
whose setting is the :class:`~asa_snn.data.model_input.InputSpec` and the dataset's identity: the
validation and test parts (and the training part when no augmentation is configured) read their
frames memory-mapped; an augmented training part reads each recording's decoded events from the
cache and applies the augmentation and :func:`~asa_snn.data.model_input.frames_for` per epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from asa_snn.data.datasets import (
    HARDVS,
    NMNIST,
    DailyActionDVS,
    DVSGait,
    DVSGesture,
    EventFolder,
    split_indices,
)
from asa_snn.data.events import EVENT_DTYPE, EventStream
from asa_snn.data.frame_cache import FrameCache
from asa_snn.data.model_input import InputSpec, centre_crop, check_sensor, frames_for
from asa_snn.data.synthetic import SyntheticDVS, SyntheticDVSConfig
from asa_snn.data.transforms import Compose, EventDrop, RandomTimeCrop
from asa_snn.errors import AsaSnnError
from asa_snn.train.config import DataConfig, TrainConfig


def resolve_root(root: str | None, config_source: str) -> Path:
    """The dataset folder: ``$VAR`` and ``~`` expanded; a relative path is tried against the current
    working directory first, then against the config file's folder.

    Raises:
        AsaSnnError: no root given, or neither candidate exists (both are named).
    """
    if not root:
        raise AsaSnnError(
            f"{config_source or '<config>'}: key 'data.root' is missing; expected the dataset folder"
        )
    path = Path(os.path.expanduser(os.path.expandvars(root)))
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    if not path.is_absolute() and config_source:
        candidates.append(Path(config_source).parent / path)
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    tried = " and ".join(str(c) for c in candidates)
    raise AsaSnnError(f"data.root {root!r}: no such folder; looked at {tried}")


@dataclass(frozen=True)
class CenterCrop:
    """Centre crop of frames [..., H_in, W_in] to [..., H, W] (``size`` = (H, W))."""

    size: tuple[int, int]

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        height, width = frames.shape[-2:]
        if height < self.size[0] or width < self.size[1]:
            raise AsaSnnError(
                f"data.crop {list(self.size)} is larger than the frames' (H, W) = ({height}, {width})"
            )
        top, left = (height - self.size[0]) // 2, (width - self.size[1]) // 2
        return frames[..., top : top + self.size[0], left : left + self.size[1]]


def input_spec(data: DataConfig, dt_us: int | None, sensor_size: tuple[int, ...]) -> InputSpec:
    """The preprocessing contract of ``data`` for recordings of ``sensor_size`` (W, H, P), or for
    HAR-DVS frames of shape ``sensor_size`` = [T, P, H, W] (:mod:`asa_snn.data.model_input`)."""
    if data.kind == "hardvs":
        _, polarities, height, width = sensor_size
        shape = (polarities, *(data.crop or (height, width)))
        return InputSpec(
            shape, (width, height, polarities), n_steps=data.n_steps, slicing="frames", dt_us=None
        )
    width, height, polarities = sensor_size
    binned = (math.ceil(height / data.downsample), math.ceil(width / data.downsample))
    crop = centre_crop(binned, tuple(data.crop)) if data.crop else None
    shape = (polarities, *(crop[2:] if crop else binned))
    slicing = "count" if data.equal_count else "time"
    return InputSpec(
        shape,
        (width, height, polarities),
        data.downsample,
        "separate",
        dt_us,
        data.n_steps,
        slicing,
        crop,
        data.max_count,
    )


def frame_pipeline(spec: InputSpec, data: DataConfig, augment_seed: int | None) -> Callable[[Any], Any]:
    """EventStream -> float32 frames [T, P, H, W] by :func:`~asa_snn.data.model_input.frames_for`
    (or, for HAR-DVS, the frame tensor cropped).

    ``augment_seed`` None: no augmentation (validation and test); else random time crop /
    EventDrop as the config switches them on, seeded from it, applied after binning.
    """
    if data.kind == "hardvs":
        return CenterCrop(data.crop) if data.crop else _identity
    steps: list[Callable[[EventStream], EventStream]] = []
    if augment_seed is not None and data.random_crop and not data.equal_count:
        steps.append(RandomTimeCrop(spec.dt_us * data.n_steps, seed=augment_seed))
    if augment_seed is not None and data.event_drop:
        event_ratio, time_ratio, area_ratio = data.event_drop_ratios
        steps.append(EventDrop(augment_seed + 1, event_ratio, time_ratio, area_ratio, data.event_drop_random))
    return partial(frames_for, spec, augment=Compose(tuple(steps)) if steps else None)


def _identity(sample: Any) -> Any:
    return sample


def augments(data: DataConfig) -> bool:
    """Whether ``data`` configures a random training augmentation (time crop or EventDrop)."""
    return data.kind != "hardvs" and ((data.random_crop and not data.equal_count) or data.event_drop)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of item ``index`` in epoch ``epoch`` (0-based) of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class Mapped(Dataset):
    """Items ``indices[i]`` of ``base`` (which returns raw samples) passed through ``transform``.

    Items: ``(float32 tensor [T, C, H, W], label)``. ``dataset[i]`` is the plain (unaugmented)
    item; ``dataset[(epoch, i)]`` (what :class:`EpochSampler` yields) is augmented by
    ``augment(sample_seed(augment_seed, epoch, i))`` when ``augment`` and ``augment_seed`` are set,
    else plain. With a ``cache``, plain frames and (for augmented items) decoded events are read
    from it (module docstring).

    Args:
        base: the raw dataset (``files`` and ``labels`` known without decoding).
        indices: the items of ``base`` this part holds.
        transform: raw sample -> frames, no augmentation.
        augment: seed -> a transform that augments (None: the part is never augmented).
        cache: the on-disk frame cache, or None.
        spec: the input spec (needed with ``cache`` and ``augment``).
    """

    def __init__(
        self,
        base: Dataset,
        indices: np.ndarray,
        transform: Callable[[Any], Any],
        augment: Callable[[int], Callable[[Any], Any]] | None = None,
        cache: FrameCache | None = None,
        spec: InputSpec | None = None,
    ) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform
        self.augment = augment
        self.cache = cache
        self.spec = spec
        self.augment_seed: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (None, key)
        position = int(self.indices[index])
        if epoch is not None and self.augment is not None and self.augment_seed is not None:
            frames = self.augment(sample_seed(self.augment_seed, epoch, index))(self._stream(position))
        elif self.cache is not None:
            frames = self.cache.fetch(
                self.base.files[position],
                lambda: self.transform(self.base[position][0]),
                "frames",
                self._fits,
            )
        else:
            frames = self.transform(self.base[position][0])
        tensor = torch.from_numpy(np.array(frames, dtype=np.float32, copy=True))
        return tensor, int(self.base.labels[position])

    def _fits(self, frames: np.ndarray) -> bool:
        """A cached frame array has the spec's shape [T, C, H, W]."""
        return self.spec is None or frames.shape == (self.spec.n_steps, *self.spec.shape)

    def _stream(self, position: int) -> Any:
        """The raw sample at ``position`` of ``base``; with a cache, its events read from it."""
        if self.cache is None or self.spec is None:
            return self.base[position][0]
        source = str(self.base.files[position])
        events = self.cache.fetch(
            source, lambda: self._checked_events(position), "events", lambda a: a.dtype == EVENT_DTYPE
        )
        return EventStream(np.array(events), self.spec.sensor_size, source)

    def _checked_events(self, position: int) -> np.ndarray:
        """The events of recording ``position``, refused unless its sensor fits the spec."""
        stream = self.base[position][0]
        check_sensor(self.spec, stream)
        return stream.events

    def raw(self, index: int) -> tuple[Any, int]:
        """The untransformed sample ``index`` and its label."""
        return self.base[int(self.indices[index])]


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` for every index of ``sampler`` (a DistributedSampler): the keys of
    augmented :class:`Mapped` items, so that DataLoader workers, persistent or not, know the epoch."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Order (and augment) the next pass as epoch ``epoch`` (0-based)."""
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Any:
        return ((self.epoch, int(index)) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


@dataclass
class DataBundle:
    """The three parts of the data and what identifies them.

    Attributes:
        train, val, test: datasets of ``(frames [T, C, H, W], label)``.
        dt_us: frame length in microseconds (None for equal-count or HAR-DVS frames).
        fingerprint: sha256 hex of the dataset identity (:func:`fingerprint`).
        input_spec: how a recording becomes the model input (the folded graph carries it).
        num_classes: the data's classes: as many as the datasets name, at least the highest label
            of any part plus one (0: not known).
    """

    train: Mapped
    val: Mapped
    test: Mapped
    dt_us: int | None
    fingerprint: str
    input_spec: InputSpec
    num_classes: int = 0


def _raw_datasets(config: TrainConfig) -> tuple[Dataset, Dataset | None, str]:
    """(training split, test split or None, root as text) without any transform."""
    data = config.data
    if data.kind == "synthetic":
        synthetic = SyntheticDVSConfig(
            sensor_size=(*data.sensor_size, 2),
            n_classes=data.n_classes,
            duration_us=data.duration_us,
            n_steps=data.n_steps,
            dt_us=data.dt_us,
            seed=data.data_seed,
        )
        train = _Recordings(SyntheticDVS(data.n_samples, synthetic, "train"))
        test = _Recordings(SyntheticDVS(data.n_test_samples, synthetic, "test"))
        return train, (None if data.test_fraction > 0 else test), ""
    root = resolve_root(data.root, config.source)
    makers: dict[str, Callable[[str], Dataset]] = {
        "nmnist": lambda split: NMNIST(root, split),
        "gesture": lambda split: DVSGesture(root, split),
        "gait": lambda split: DVSGait(root, split, condition=data.condition),
        "dailyaction": lambda split: DailyActionDVS(root, split),
        "hardvs": lambda split: HARDVS(root, split, num_frames=data.n_steps),
        "folder": lambda split: EventFolder(root, data.labels_file, split=split),
    }
    make = makers[data.kind]
    own_test = data.test_fraction == 0
    train = make("train" if own_test or data.kind != "folder" else None)
    return train, (make("test") if own_test else None), str(root)


class _Recordings(Dataset):
    """A synthetic dataset's items as ``(EventStream, label)`` (the raw sample, like the real datasets)."""

    def __init__(self, dataset: SyntheticDVS) -> None:
        self.dataset = dataset
        self.labels = dataset.labels
        self.classes = list(dataset.config.classes)
        self.files = [f"synthetic:{dataset.split}:{i}" for i in range(len(dataset))]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[EventStream, int]:
        return self.dataset.recording(index), int(self.labels[index])


def foreground_masks(part: Mapped) -> Callable[[int], np.ndarray] | None:
    """Ground-truth object masks of ``part``'s items (bool [T, H, W] at input resolution), or None.

    Only the embedded synthetic data has them; the analysis uses them to tell background spikes
    from object spikes.
    """
    base = part.base
    if not isinstance(base, _Recordings):
        return None
    return lambda index: base.dataset.foreground_masks(int(part.indices[index]))


def fingerprint(identity: dict[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of ``identity`` (kind, root, frame parameters and
    the sample ids and labels of each part)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def build_data(config: TrainConfig) -> DataBundle:
    """The training, validation and test parts for ``config`` (training part not yet augmented).

    Raises:
        AsaSnnError: missing dataset folder, fewer than two training samples, a frame setting
            the data cannot meet.
    """
    data = config.data
    train_split, test_split, root = _raw_datasets(config)
    labels = np.asarray(train_split.labels, dtype=np.int64)
    available = (
        np.arange(len(labels)) if data.max_samples is None else np.arange(min(data.max_samples, len(labels)))
    )
    if data.test_fraction > 0:
        keep, held = split_indices(labels[available], data.test_fraction, config.train.seed + 1)
        test_base, test_indices = train_split, available[held]
        available = available[keep]
    else:
        test_base, test_indices = test_split, np.arange(len(test_split))
    train_part, val_part = split_indices(labels[available], data.val_fraction, config.train.seed)
    train_indices, val_indices = available[train_part], available[val_part]
    if len(train_indices) < 1 or len(val_indices) < 1 or len(test_indices) < 1:
        raise AsaSnnError(
            f"{config.source or '<config>'}: data gives {len(train_indices)} training, {len(val_indices)} "
            f"validation and {len(test_indices)} test samples; expected at least one each "
            "(raise data.n_samples / data.max_samples or data.val_fraction)"
        )
    dt_us = _frame_dt(data)
    spec = input_spec(data, dt_us, _sensor_of(train_split[int(train_indices[0])][0]))
    plain = frame_pipeline(spec, data, None)
    identity = {
        "kind": data.kind,
        "root": root,
        "condition": data.condition if data.kind == "gait" else None,
        "frames": {
            "dt_us": dt_us,
            "n_steps": data.n_steps,
            "downsample": data.downsample,
            "equal_count": data.equal_count,
            "crop": data.crop,
            **({"max_count": data.max_count} if data.max_count is not None else {}),
        },
        "synthetic": [data.n_classes, list(data.sensor_size), data.duration_us, data.data_seed]
        if data.kind == "synthetic"
        else None,
        "parts": {
            name: [[str(base.files[i]) for i in indices], [int(base.labels[i]) for i in indices]]
            for name, base, indices in (
                ("train", train_split, train_indices),
                ("val", train_split, val_indices),
                ("test", test_base, test_indices),
            )
        },
    }
    seen = [label for part in identity["parts"].values() for label in part[1]]
    named = max(len(getattr(base, "classes", None) or ()) for base in (train_split, test_base))
    cache = None
    if data.cache_dir:
        setting = {key: identity[key] for key in ("kind", "condition", "synthetic")}
        cache = FrameCache.for_setting(data.cache_dir, {**setting, "spec": asdict(spec)})
    augment = partial(frame_pipeline, spec, data) if augments(data) else None
    return DataBundle(
        train=Mapped(train_split, train_indices, plain, augment, cache, spec),
        val=Mapped(train_split, val_indices, plain, None, cache, spec),
        test=Mapped(test_base, test_indices, plain, None, cache, spec),
        dt_us=dt_us,
        fingerprint=fingerprint(identity),
        input_spec=spec,
        num_classes=max(named, max(seen, default=-1) + 1),
    )


def fill_cache(
    data: DataBundle, workers: int = 0, advance: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Compute every cache entry of ``data`` ahead of training: the frames of each recording of
    every part, and the decoded events of an augmented training part (what training reads).

    Args:
        data: parts built with ``data.cache_dir`` set (:func:`build_data`).
        workers: DataLoader processes that compute entries in parallel (0: this process).
        advance: called with the number of recordings done after each one (a progress bar).

    Returns:
        Recordings visited per part (``train``, ``val``, ``test``).

    Raises:
        AsaSnnError: the data has no cache (``data.cache_dir`` unset).
    """
    if data.train.cache is None:
        raise AsaSnnError("fill_cache: the data config sets no data.cache_dir; set it to the cache folder")
    done = {}
    for name in ("train", "val", "test"):
        part = getattr(data, name)
        keys: list[Any] = list(range(len(part)))
        if part.augment is not None:
            keys = [(0, i) for i in keys]
        loader = DataLoader(
            _Visit(part, keys), batch_size=None, num_workers=workers, generator=torch.Generator()
        )
        for _ in loader:
            if advance is not None:
                advance(1)
        done[name] = len(keys)
    return done


class _Visit(Dataset):
    """Touches item ``keys[i]`` of ``part`` (filling its cache entry); returns nothing of it."""

    def __init__(self, part: Mapped, keys: list[Any]) -> None:
        self.part, self.keys = part, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> int:
        key = self.keys[index]
        if isinstance(key, tuple):
            self.part._stream(int(self.part.indices[key[1]]))
        else:
            self.part[key]
        return index


def check_classes(config: TrainConfig, data: DataBundle, allow_unused: bool = False) -> None:
    """Refuse a ``model.num_classes`` unlike the data's classes, before any training.

    Fewer outputs than classes cannot be trained at all (a label has no output); more leave
    outputs that no sample ever trains, almost always a mistyped config, so they are refused too
    unless ``allow_unused``.

    Raises:
        AsaSnnError: naming ``model.num_classes`` and the data's class count.
    """
    wanted, found = config.model.num_classes, data.num_classes
    if found <= 0 or wanted == found or (wanted > found and allow_unused):
        return
    source = config.source or "<config>"
    if wanted < found:
        raise AsaSnnError(
            f"{source}: model.num_classes = {wanted} but the data has {found} classes "
            f"(labels 0..{found - 1}); set model.num_classes = {found}"
        )
    raise AsaSnnError(
        f"{source}: model.num_classes = {wanted} but the data has only {found} classes "
        f"(labels 0..{found - 1}): {wanted - found} outputs would never be trained; set "
        f"model.num_classes = {found} (train(..., allow_unused_classes=True) accepts it)"
    )


def _sensor_of(sample: Any) -> tuple[int, ...]:
    """(W, H, P) of a recording, or the [T, P, H, W] shape of a frame sample (HAR-DVS)."""
    return tuple(sample.sensor_size) if isinstance(sample, EventStream) else tuple(np.shape(sample))


def _frame_dt(data: DataConfig) -> int | None:
    if data.equal_count or data.kind == "hardvs":
        return None
    if data.dt_us is not None:
        return data.dt_us
    if data.kind == "synthetic":
        return max(data.duration_us // data.n_steps, 1)
    raise AsaSnnError(
        f"key 'data.dt_us' is missing for data.kind {data.kind!r}; expected the frame length in us"
    )
