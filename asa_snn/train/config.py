"""Training configs: one TOML or YAML file describes data, model, optimiser and schedule.

A config file has four sections (every key optional except ``model.network``)::

    [data]   kind, root, dt_us, n_steps, downsample, equal_count, crop, n_samples, ...
    [model]  the fields of :class:`~asa_snn.models.registry.ModelSpec`
    [optim]  lr, weight_decay, lr_min
    [train]  epochs, batch_size, loss, seed, eval_windows

:func:`load_config` checks every key and type and names the file, the key and what was expected
when something is wrong. Overrides such as ``model.attention=asa2`` or ``train.epochs=3`` replace
single values after the file is read (the value is parsed as a TOML literal, else taken as a string).
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package (pyproject marker)
    import tomli as tomllib
from asa_snn.errors import AsaSnnError
from asa_snn.models.attention import ATTENTION_KINDS
from asa_snn.models.registry import NETWORKS, NEURONS, ModelSpec

DATASET_KINDS = ("synthetic", "nmnist", "gesture", "gait", "dailyaction", "hardvs", "folder")
"""Values of ``data.kind``."""

LOSSES = ("mse_rate", "cross_entropy")
"""Values of ``train.loss``."""


@dataclass(frozen=True)
class DataConfig:
    """The ``[data]`` section.

    Attributes:
        kind: one of :data:`DATASET_KINDS`.
        root: dataset folder; a relative path is looked up first against the current working
            directory, then against the config file's folder; ``$VAR`` / ``~`` are expanded.
            Unused for ``synthetic``.
        condition: ``"day"`` or ``"night"`` (DVS128 Gait only).
        dt_us: frame length in microseconds; None: for synthetic data, duration / n_steps.
        n_steps: number of frames T (for HAR-DVS: frames sampled per clip).
        downsample: coordinate binning factor (1 = none).
        equal_count: frames of equal event count instead of fixed ``dt_us`` windows.
        crop: (H, W) centre crop of the frames after binning, or None.
        random_crop: training frames start at a random time (window ``n_steps * dt_us``).
        event_drop: EventDrop augmentation in training.
        val_fraction: share of each class of the training data held out for model selection.
        test_fraction: > 0: the test set is this share of the training split (for datasets whose
            test split is absent, e.g. the 1000 N-MNIST training files); 0: the dataset's test split.
        max_samples: use only the first ``max_samples`` recordings of the training split.
        n_samples: synthetic data: number of training recordings (validation is held out of them).
        n_test_samples: synthetic data: number of test recordings.
        n_classes: synthetic data: number of motion classes (2..7).
        sensor_size: synthetic data: (W, H) of the simulated sensor.
        duration_us: synthetic data: length of each recording in microseconds.
        data_seed: synthetic data: generator seed.
        labels_file: folder data: name of the CSV inside ``root``.
    """

    kind: str = "synthetic"
    root: str | None = None
    condition: str = "day"
    dt_us: int | None = None
    n_steps: int = 16
    downsample: int = 1
    equal_count: bool = False
    crop: tuple[int, int] | None = None
    random_crop: bool = False
    event_drop: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    max_samples: int | None = None
    n_samples: int = 280
    n_test_samples: int = 70
    n_classes: int = 7
    sensor_size: tuple[int, int] = (32, 32)
    duration_us: int = 320_000
    data_seed: int = 0
    labels_file: str = "labels.csv"


@dataclass(frozen=True)
class OptimConfig:
    """The ``[optim]`` section: Adam with one cosine decay from ``lr`` to ``lr_min`` over all epochs.

    lr_e = lr_min + (lr - lr_min) * (1 + cos(pi * e / epochs)) / 2 for epoch e (0-based).
    """

    lr: float = 1e-4
    weight_decay: float = 1e-4
    lr_min: float = 1e-6


@dataclass(frozen=True)
class TrainSection:
    """The ``[train]`` section.

    Attributes:
        epochs: number of passes over the training data.
        batch_size: samples per optimiser step (per process under torchrun).
        loss: ``"mse_rate"`` (MSE between output rate and one-hot label, the paper's) or
            ``"cross_entropy"`` (on the scores as logits).
        seed: seeds model initialisation, data order and augmentation.
        eval_windows: > 1: each test recording is judged by majority over this many windows
            (FACTS.md section 2: 10 for Gesture and Gait); needs fixed-``dt_us`` frames.
    """

    epochs: int = 10
    batch_size: int = 32
    loss: str = "mse_rate"
    seed: int = 0
    eval_windows: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """A whole training config.

    Attributes:
        data, model, optim, train: the four sections.
        source: the file it was read from ("" when built in code); relative data roots resolve
            against its folder.
    """

    data: DataConfig
    model: ModelSpec
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data: the four sections (``source`` left out)."""
        sections = {"data": asdict(self.data), "optim": asdict(self.optim), "train": asdict(self.train)}
        sections["model"] = self.model.to_dict()
        return json.loads(json.dumps(sections))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> TrainConfig:
        """Build and check a config from plain data (the inverse of :meth:`to_dict`)."""
        return _build(data, source or "<config>", source)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelSpec,
    "optim": OptimConfig,
    "train": TrainSection,
}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Raw sections of a ``.toml``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    if not path.is_file():
        raise AsaSnnError(f"config file {path} does not exist")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text(encoding="utf-8"))
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise AsaSnnError(
                    f"{path}: expected a mapping of sections at the top, found {type(data).__name__}"
                )
            return data
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AsaSnnError(f"{path}: not a valid {path.suffix[1:].upper()} file: {exc}") from exc
    raise AsaSnnError(f"{path}: unknown config suffix {path.suffix!r}; expected .toml, .yaml or .yml")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"section.key=value"`` -> (["section", "key"], value); value as a TOML literal, else a string.

    Nested keys are allowed (``model.network_options.channels=[4, 8]``).
    """
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise AsaSnnError(f"override {text!r}: expected 'section.key=value', e.g. 'train.epochs=3'")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with every ``section.key=value`` override applied."""
    result = json.loads(json.dumps(raw))
    for text in overrides:
        parts, value = parse_override(text)
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise AsaSnnError(f"override {text!r}: {part!r} is not a section or table")
        target[parts[-1]] = value
    return result


RECIPES = Path(__file__).resolve().parent.parent / "configs"
"""The recipes shipped with the package (asa_snn/configs)."""


def resolve_config_path(text: str | Path) -> Path:
    """A config file path, or the name of a shipped recipe (with or without ``.toml``).

    Raises:
        AsaSnnError: neither a file nor a shipped recipe; the message lists the recipes.
    """
    path = Path(text)
    if path.is_file():
        return path
    name = str(text)
    shipped = RECIPES / (name if name.endswith((".toml", ".yaml")) else f"{name}.toml")
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in RECIPES.glob("*.toml"))
    raise AsaSnnError(
        f"config {name!r}: no such file, and no shipped recipe of that name ({', '.join(names)})"
    )


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read, override and check a config file.

    Raises:
        AsaSnnError: missing file, bad syntax, unknown section or key, wrong type, unknown
            network / neuron / attention / dataset kind / loss; the message names the file and key.
    """
    path = Path(path)
    raw = apply_overrides(read_config_file(path), overrides)
    return _build(raw, str(path), str(path.resolve()))


def _build(raw: dict[str, Any], name: str, source: str) -> TrainConfig:
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise AsaSnnError(f"{name}: unknown section(s) {unknown}; expected some of {sorted(SECTIONS)}")
    if "network" not in raw.get("model", {}):
        raise AsaSnnError(f"{name}: key 'model.network' is missing; expected one of {', '.join(NETWORKS)}")
    built = {section: _section(name, section, cls, raw.get(section, {})) for section, cls in SECTIONS.items()}
    config = TrainConfig(source=source, **built)
    _check_choices(name, config)
    return config


def _section(name: str, section: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise AsaSnnError(f"{name}: [{section}] must be a table of keys, found {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise AsaSnnError(
            f"{name}: unknown key(s) {[f'{section}.{k}' for k in unknown]}; expected some of {sorted(known)}"
        )
    checked = {key: _coerce(name, f"{section}.{key}", hints[key], value) for key, value in values.items()}
    return cls(**checked)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(name: str, key: str, hint: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``hint`` (int, float, bool, str, tuples, dicts, unions)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    expected = _type_name(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        return _coerce(name, key, inner[0], value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, bool, str) and type(value) is hint:
        return value
    if origin is tuple and isinstance(value, list | tuple):
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) == len(value):
            return tuple(
                _coerce(name, f"{key}[{i}]", t, v) for i, (t, v) in enumerate(zip(items, value, strict=True))
            )
    if origin is dict and isinstance(value, dict):
        return dict(value)
    raise AsaSnnError(
        f"{name}: key {key!r} has value {value!r} ({type(value).__name__}); expected {expected}"
    )


def _check_choices(name: str, config: TrainConfig) -> None:
    neuron = config.model.neuron
    choices = [
        ("model.network", config.model.network, tuple(NETWORKS)),
        ("model.attention", config.model.attention, tuple(ATTENTION_KINDS)),
        ("model.neuron", neuron, tuple(NEURONS)) if neuron is not None else None,
        ("data.kind", config.data.kind, DATASET_KINDS),
        ("data.condition", config.data.condition, ("day", "night")),
        ("train.loss", config.train.loss, LOSSES),
    ]
    for key, value, options in filter(None, choices):
        if value not in options:
            raise AsaSnnError(
                f"{name}: key {key!r} has unknown value {value!r}; expected one of {', '.join(options)}"
            )
    positive = {
        "data.n_steps": config.data.n_steps,
        "data.downsample": config.data.downsample,
        "train.epochs": config.train.epochs,
        "train.batch_size": config.train.batch_size,
        "train.eval_windows": config.train.eval_windows,
    }
    for key, value in positive.items():
        if value < 1:
            raise AsaSnnError(f"{name}: key {key!r} is {value}; expected an integer >= 1")
    for key, value in (
        ("data.val_fraction", config.data.val_fraction),
        ("data.test_fraction", config.data.test_fraction),
    ):
        if not 0.0 <= value < 1.0:
            raise AsaSnnError(f"{name}: key {key!r} is {value}; expected 0 <= value < 1")
    if config.train.eval_windows > 1 and (config.data.equal_count or config.data.kind == "hardvs"):
        raise AsaSnnError(
            f"{name}: key 'train.eval_windows' is {config.train.eval_windows}; the multi-window test needs "
            "fixed-dt_us event frames (data.equal_count = false, data.kind not 'hardvs'), so use 1"
        )
    if config.model.timesteps != config.data.n_steps:
        raise AsaSnnError(
            f"{name}: key 'model.timesteps' is {config.model.timesteps} but 'data.n_steps' is "
            f"{config.data.n_steps}; expected them equal"
        )
