"""Training configs: one TOML or YAML file describes data, model, optimiser and schedule.

A config file has four sections (every key optional except ``model.network``)::

    [data]   kind, root, dt_us, n_steps, downsample, equal_count, crop, n_samples, cache_dir, ...
    [model]  the fields of :class:`~asa_snn.models.registry.ModelSpec`
    [optim]  lr, weight_decay, lr_min
    [train]  epochs, batch_size, loss, seed, eval_windows, device, precision, workers,
             sync_batchnorm, tensorboard

:func:`load_config` checks every key and type and names the file, the key and what was expected
when something is wrong, on one line. Overrides such as ``model.attention=asa2`` or
``train.epochs=3`` replace single values after the file is read (the value is parsed as a TOML
literal, else taken as a string).

Hostile files are refused before they cost memory: YAML aliases may expand a document to at most
:data:`MAX_YAML_NODES` nodes ("billion laughs"), values must be plain data nested at most
:data:`MAX_NESTING` deep, every numeric key must be finite and inside the bounds of
:data:`NUMERIC_BOUNDS` (integers of any length included), and the model's layers may produce at most
:data:`~asa_snn.models.registry.MAX_STEP_ACTIVATIONS` values per sample and time step (counted on
PyTorch's ``meta`` device before anything is allocated). :func:`read_data_file` is that bounded
reader for other TOML / YAML inputs (budget files).
"""

from __future__ import annotations

import json
import math
import re
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
from asa_snn.data.events import MAX_SENSOR_SIDE
from asa_snn.data.synthetic import MOTIONS
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.models.attention import ATTENTION_KINDS
from asa_snn.models.registry import MAX_CLASSES, MAX_TIMESTEPS, NETWORKS, NEURONS, ModelSpec, check_model_size

DATASET_KINDS = ("synthetic", "nmnist", "gesture", "gait", "dailyaction", "hardvs", "folder")
"""Values of ``data.kind``."""

LOSSES = ("mse_rate", "cross_entropy")
"""Values of ``train.loss``."""

PRECISIONS = ("32", "bf16", "16-mixed")
"""Values of ``train.precision``."""

_DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
"""The device names :func:`asa_snn.devices.resolve_device` takes (only the spelling is checked here)."""


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
        max_count: most events counted per pixel, channel and step (1: binary frames, the input of
            a chip that takes one spike per pixel and step), or None for event counts.
        random_crop: training frames start at a random time (window ``n_steps * dt_us``).
        event_drop: EventDrop augmentation in training.
        event_drop_ratios: (events, time span, sensor area) fractions EventDrop removes, each in [0, 1].
        event_drop_random: the ratios are maxima; each training sample draws its ratio uniformly in
            [0, ratio) (the released Gait runs draw them per sample).
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
        cache_dir: folder of the on-disk frame cache (:mod:`asa_snn.data.frame_cache`), or None
            for no cache; ``~`` is expanded. Where frames are cached changes no result.
    """

    kind: str = "synthetic"
    root: str | None = None
    condition: str = "day"
    dt_us: int | None = None
    n_steps: int = 16
    downsample: int = 1
    equal_count: bool = False
    crop: tuple[int, int] | None = None
    max_count: int | None = None
    random_crop: bool = False
    event_drop: bool = False
    event_drop_ratios: tuple[float, float, float] = (0.2, 0.2, 0.2)
    event_drop_random: bool = False
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
    cache_dir: str | None = None


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
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
            (:func:`asa_snn.devices.resolve_device`; under torchrun ``auto`` / ``cuda`` take the
            process's ``LOCAL_RANK``). Checked when training starts, so a checkpoint trained on a
            GPU still loads where there is none.
        precision: ``"32"`` (float32), ``"bf16"`` (bfloat16 autocast, CPU or GPU) or
            ``"16-mixed"`` (float16 autocast with a gradient scaler, CUDA only).
        workers: DataLoader worker processes per training process; None: a share of the cores
            (:func:`~asa_snn.train.trainer.default_workers`). Results do not depend on it.
        sync_batchnorm: synchronize batch-norm statistics across torchrun processes (CUDA).
        tensorboard: also log to TensorBoard (``OUT/tensorboard``; needs the ``tensorboard`` extra).
        foldability: weight of the penalty that pulls each attention output toward its best static
            per-channel gain, the form the fold keeps (:mod:`asa_snn.train.foldability`); 0: off.
    """

    epochs: int = 10
    batch_size: int = 32
    loss: str = "mse_rate"
    seed: int = 0
    eval_windows: int = 1
    device: str = "auto"
    precision: str = "32"
    workers: int | None = None
    sync_batchnorm: bool = False
    tensorboard: bool = False
    foldability: float = 0.0


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


@dataclass(frozen=True)
class Bounds:
    """The values one numeric config key accepts: finite, ``low <= value <= high`` (``<`` where open).

    Args:
        low, high: the bounds.
        low_open, high_open: exclude the bound itself.
        why: why the bound is where it is, quoted in the error message.
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def admits(self, value: float) -> bool:
        """Whether ``value`` is finite and inside the bounds (an integer of any size is compared
        exactly, never converted to a float, which overflows past 309 digits)."""
        if not isinstance(value, int) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """The bounds as text, e.g. ``0 < value <= 10``."""
        low, high = ("<" if self.low_open else "<="), ("<" if self.high_open else "<=")
        text = f"{_plain_number(self.low)} {low} value {high} {_plain_number(self.high)}"
        return f"{text} ({self.why})" if self.why else text


def _plain_number(value: float) -> str:
    """``4294967295`` for integral bounds (not ``4.29497e+09``), ``0.5`` otherwise."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _shown_number(value: float) -> str:
    """A value found in a file, for a message: integers past 20 digits by their length only."""
    if isinstance(value, int) and abs(value) >= 10**20:
        return f"an integer of {len(str(abs(value)))} digits"
    return str(value)


HOUR_US = 3_600_000_000
"""One hour in microseconds: the longest frame or synthetic recording a config may ask for."""

MAX_EPOCHS = 100_000
"""Most training epochs: far beyond any schedule (the paper's longest is 200), low enough that a
typo such as ``99999999999999999999`` is caught instead of running forever."""

MAX_SEED = 2**32 - 1
"""Largest seed: every generator seeded here (``numpy.random.seed``, torch) accepts 0..2**32 - 1."""

_SIDE = Bounds(1, MAX_SENSOR_SIDE, why="at most the largest sensor a file may declare")
_FRACTION = Bounds(0, 1, high_open=True)

NUMERIC_BOUNDS: dict[str, Bounds] = {
    "data.dt_us": Bounds(1, HOUR_US, why="1 us to one hour"),
    "data.n_steps": Bounds(1, 10_000, why="frames per sample; the paper's longest recipe has 60"),
    "data.downsample": _SIDE,
    "data.crop": _SIDE,
    "data.max_count": Bounds(1, 1_000_000, why="events per pixel and step (1: binary frames)"),
    "data.event_drop_ratios": Bounds(0, 1, why="fractions of events, time span and sensor area"),
    "data.val_fraction": _FRACTION,
    "data.test_fraction": _FRACTION,
    "data.max_samples": Bounds(1, 10**9),
    "data.n_samples": Bounds(1, 1_000_000, why="synthetic recordings, generated on demand"),
    "data.n_test_samples": Bounds(1, 1_000_000, why="synthetic recordings, generated on demand"),
    "data.n_classes": Bounds(2, len(MOTIONS), why="the synthetic motion classes"),
    "data.sensor_size": Bounds(4, MAX_SENSOR_SIDE, why="the synthetic sensor needs 4 px"),
    "data.duration_us": Bounds(1, HOUR_US, why="1 us to one hour"),
    "data.data_seed": Bounds(0, MAX_SEED),
    "model.timesteps": Bounds(1, MAX_TIMESTEPS, why="equal to data.n_steps"),
    "model.input_shape": _SIDE,
    "model.num_classes": Bounds(1, MAX_CLASSES),
    "optim.lr": Bounds(0, 10, low_open=True, why="Adam's step size; the recipes use 1e-4 to 3e-3"),
    "optim.weight_decay": Bounds(0, 1),
    "optim.lr_min": Bounds(0, 10, why="and at most optim.lr"),
    "train.epochs": Bounds(1, MAX_EPOCHS, why=f"a sane upper bound of {MAX_EPOCHS}"),
    "train.batch_size": Bounds(1, 65_536),
    "train.foldability": Bounds(0, 1_000, why="the penalty's weight against the task loss (0: off)"),
    "train.seed": Bounds(0, MAX_SEED),
    "train.eval_windows": Bounds(1, 1000),
    "train.workers": Bounds(0, 256, why="DataLoader worker processes"),
}
"""Bounds of every numeric key of the sections (for tuples such as ``data.crop``, of each entry).
``tests/train/test_config.py`` checks that every int or float field of the section dataclasses has one."""


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelSpec,
    "optim": OptimConfig,
    "train": TrainSection,
}


MAX_YAML_NODES = 10_000
"""Most nodes a YAML config may hold once its aliases are expanded; a recipe has about a hundred.
A 334-byte document of nested anchors ("billion laughs") expands to billions."""

MAX_NESTING = 32
"""Deepest nesting of tables and lists a config may have; recipes nest three levels."""


class _AliasBombError(yaml.composer.ComposerError):
    """A YAML document whose aliases expand beyond :data:`MAX_YAML_NODES` nodes, or recursive ones."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts, while composing, the nodes each node stands for with its
    aliases expanded, and stops once the document exceeds :data:`MAX_YAML_NODES` or an alias
    refers to a node that contains it (a recursive structure JSON cannot hold)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark
        node = super().compose_node(parent, index)
        if alias:
            if id(node) not in self._expanded:
                raise _AliasBombError(
                    None,
                    None,
                    "an alias refers to a node that contains it (recursive); expected plain data",
                    mark,
                )
            return node
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._expanded[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._expanded[id(key)] + self._expanded[id(value)] for key, value in node.value)
        else:
            size = 1
        if size > MAX_YAML_NODES:
            raise _AliasBombError(
                None,
                None,
                f"aliases expand the document to more than {MAX_YAML_NODES} nodes (anchors referring "
                f"to anchors, a 'billion laughs'); expected a file of at most that many values",
                mark,
            )
        self._expanded[id(node)] = size
        return node


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a PyYAML error: line and column (1-based), problem, context."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        parts = [exc.problem or "", exc.context or ""]
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return where + " ".join(" ".join(part for part in parts if part).split())
    if isinstance(exc, yaml.reader.ReaderError):
        return f"position {exc.position}: unacceptable character #x{exc.character:04x} ({exc.reason})"
    return " ".join(str(exc).split())


def _plain_data(value: Any, key: str, path: Path, depth: int = 0) -> None:
    """Refuse what the JSON round trip of the overrides cannot hold: only tables with string keys,
    lists, strings, numbers, booleans and null, nested at most :data:`MAX_NESTING` deep."""
    if depth > MAX_NESTING:
        raise InputFormatError(
            f"{path}: key {key!r} is nested more than {MAX_NESTING} levels deep; expected plain values"
        )
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                where = repr(key) if key else "the top level"
                raise InputFormatError(
                    f"{path}: key {name!r} in {where} has type {type(name).__name__}; expected a string"
                )
            _plain_data(item, f"{key}.{name}" if key else name, path, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain_data(item, f"{key}[{i}]", path, depth + 1)
    elif value is not None and not isinstance(value, str | int | float):
        raise InputFormatError(
            f"{path}: key {key!r} has value {value!r} ({type(value).__name__}); expected a number, string, "
            f"boolean, list or table"
        )


def read_data_file(path: str | Path) -> Any:
    """The plain data of a ``.toml``, ``.yaml`` or ``.yml`` file (any top level), read with the bounds
    of configs: YAML through the alias-counting safe loader, at most :data:`MAX_NESTING` levels, only
    tables / lists / strings / numbers / booleans / null. The caller checks that ``path`` is a file
    with one of those suffixes.

    Raises:
        InputFormatError: bad syntax (one line: file, line, column, problem), YAML aliases expanding
            beyond :data:`MAX_YAML_NODES` nodes or recursive, an integer literal longer than Python
            converts (``sys.get_int_max_str_digits()``), values other than plain data (TOML and YAML
            dates, YAML sets and binary), nesting deeper than :data:`MAX_NESTING`.
    """
    path = Path(path)
    kind = "TOML" if path.suffix.lower() == ".toml" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
        # _BoundedLoader is a yaml.SafeLoader: no Python objects are built
        data = tomllib.loads(text) if kind == "TOML" else yaml.load(text, Loader=_BoundedLoader)
    except UnicodeDecodeError as exc:
        raise InputFormatError(
            f"{path}: not a valid {kind} file: byte {exc.start} is not UTF-8 ({exc.reason})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputFormatError(f"{path}: not a valid TOML file: {' '.join(str(exc).split())}") from exc
    except _AliasBombError as exc:
        raise InputFormatError(f"{path}: refused YAML file: {_yaml_problem(exc)}") from exc
    except yaml.YAMLError as exc:
        raise InputFormatError(f"{path}: not a valid YAML file: {_yaml_problem(exc)}") from exc
    except RecursionError as exc:
        raise InputFormatError(
            f"{path}: {kind} nesting too deep to parse; expected at most {MAX_NESTING} levels"
        ) from exc
    except ValueError as exc:  # int() of a literal past Python's digit limit (both parsers)
        if "digits" not in str(exc):
            raise
        raise InputFormatError(
            f"{path}: refused {kind} file: an integer literal has more than {sys.get_int_max_str_digits()} "
            f"digits; expected numbers inside the bounds of their keys"
        ) from exc
    _plain_data(data, "", path)
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Raw sections of a ``.toml``, ``.yaml`` or ``.yml`` file, as plain data (:func:`read_data_file`).

    Raises:
        AsaSnnError: missing file, unknown suffix, a top level that is not a table.
        InputFormatError: what :func:`read_data_file` refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise AsaSnnError(f"config file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise AsaSnnError(f"{path}: unknown config suffix {path.suffix!r}; expected .toml, .yaml or .yml")
    data = read_data_file(path)
    if not isinstance(data, dict):
        raise AsaSnnError(f"{path}: expected a mapping of sections at the top, found {type(data).__name__}")
    return data


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
    if not isinstance(raw, dict):
        raise AsaSnnError(f"{name}: expected a mapping of sections at the top, found {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in SECTIONS)
    if unknown:
        raise AsaSnnError(f"{name}: unknown section(s) {unknown}; expected some of {sorted(SECTIONS)}")
    for section, values in raw.items():
        if not isinstance(values, dict):
            found = "null (empty)" if values is None else f"a {type(values).__name__} ({values!r:.40})"
            raise AsaSnnError(f"{name}: section [{section}] is {found}; expected a table of keys")
    if "network" not in raw.get("model", {}):
        raise AsaSnnError(f"{name}: key 'model.network' is missing; expected one of {', '.join(NETWORKS)}")
    built = {section: _section(name, section, cls, raw.get(section, {})) for section, cls in SECTIONS.items()}
    config = TrainConfig(source=source, **built)
    _check_numbers(name, config)
    _check_choices(name, config)
    _check_model_size(name, config)
    return config


def _section(name: str, section: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise AsaSnnError(f"{name}: [{section}] must be a table of keys, found {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(str(key) for key in values if key not in known)
    if unknown:
        raise AsaSnnError(
            f"{name}: unknown key(s) {[f'{section}.{k}' for k in unknown]}; expected some of {sorted(known)}"
        )
    if section == "train" and type(values.get("precision")) is int:
        values = {**values, "precision": str(values["precision"])}
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
        if isinstance(value, int) and abs(value) > sys.float_info.max:
            raise InputFormatError(
                f"{name}: key {key!r} is {_shown_number(value)}, too large for a float; "
                f"expected a finite number"
            )
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


def _numbers(value: Any) -> list[tuple[str, Any]]:
    """(index suffix, number) of a numeric value or of each entry of a tuple; none for None."""
    if value is None:
        return []
    if isinstance(value, tuple):
        return [(f"[{i}]", item) for i, item in enumerate(value)]
    return [("", value)]


def _nan_path(value: Any, key: str) -> str | None:
    """The key of the first NaN inside nested option tables and lists, or None."""
    if isinstance(value, float) and math.isnan(value):
        return key
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for part, item in items:
        found = _nan_path(item, f"{key}.{part}" if isinstance(value, dict) else f"{key}[{part}]")
        if found is not None:
            return found
    return None


def _check_numbers(name: str, config: TrainConfig) -> None:
    """Every numeric key finite and inside :data:`NUMERIC_BOUNDS`; ``optim.lr_min <= optim.lr``;
    no NaN anywhere in the model's option tables (infinity may be meant there, e.g. tau_mem)."""
    for key, bounds in NUMERIC_BOUNDS.items():
        section, field_name = key.split(".")
        for suffix, value in _numbers(getattr(getattr(config, section), field_name)):
            if not bounds.admits(value):
                kind = "an integer" if isinstance(value, int) else "a finite number"
                raise InputFormatError(
                    f"{name}: key '{key}{suffix}' is {_shown_number(value)}; expected {kind} with "
                    f"{bounds.describe()}"
                )
    if config.optim.lr_min > config.optim.lr:
        raise InputFormatError(
            f"{name}: key 'optim.lr_min' is {config.optim.lr_min}, above 'optim.lr' = {config.optim.lr}; "
            f"expected lr_min <= lr (the cosine schedule decays from lr to lr_min)"
        )
    for option in ("neuron_options", "attention_options", "network_options"):
        found = _nan_path(getattr(config.model, option), f"model.{option}")
        if found is not None:
            raise InputFormatError(f"{name}: key {found!r} is nan; expected a number")


def _check_choices(name: str, config: TrainConfig) -> None:
    neuron = config.model.neuron
    choices = [
        ("model.network", config.model.network, tuple(NETWORKS)),
        ("model.attention", config.model.attention, tuple(ATTENTION_KINDS)),
        ("model.neuron", neuron, tuple(NEURONS)) if neuron is not None else None,
        ("data.kind", config.data.kind, DATASET_KINDS),
        ("data.condition", config.data.condition, ("day", "night")),
        ("train.loss", config.train.loss, LOSSES),
        ("train.precision", config.train.precision, PRECISIONS),
    ]
    for key, value, options in filter(None, choices):
        if value not in options:
            raise AsaSnnError(
                f"{name}: key {key!r} has unknown value {value!r}; expected one of {', '.join(options)}"
            )
    if not _DEVICE_NAME.fullmatch(config.train.device):
        raise AsaSnnError(
            f"{name}: key 'train.device' has value {config.train.device!r}; expected auto, cpu, cuda, "
            "cuda:N or mps"
        )
    if config.train.eval_windows > 1 and (config.data.equal_count or config.data.kind == "hardvs"):
        raise AsaSnnError(
            f"{name}: key 'train.eval_windows' is {config.train.eval_windows}; the multi-window test needs "
            "fixed-dt_us event frames (data.equal_count = false, data.kind not 'hardvs'), so use 1"
        )
    if config.train.foldability > 0 and config.model.attention == "none":
        raise AsaSnnError(
            f"{name}: key 'train.foldability' is {config.train.foldability:g} but model.attention is "
            "'none': the penalty pulls attention outputs toward a static gain, so set 0 or an attention"
        )
    if config.data.max_count is not None and config.data.kind == "hardvs":
        raise AsaSnnError(
            f"{name}: key 'data.max_count' needs event recordings; HAR-DVS ships frames, so leave it unset"
        )
    if config.model.timesteps != config.data.n_steps:
        raise AsaSnnError(
            f"{name}: key 'model.timesteps' is {config.model.timesteps} but 'data.n_steps' is "
            f"{config.data.n_steps}; expected them equal"
        )


def _check_model_size(name: str, config: TrainConfig) -> None:
    """The model the config builds, counted on the ``meta`` device (no memory) before training builds
    it: at most :data:`~asa_snn.models.registry.MAX_PARAMETERS` parameters and
    :data:`~asa_snn.models.registry.MAX_STEP_ACTIVATIONS` layer outputs per sample and time step."""
    try:
        check_model_size(config.model, name, "model.")
    except AsaSnnError as exc:  # bad network options, named by the builder
        if str(exc).startswith(f"{name}: "):
            raise
        raise type(exc)(f"{name}: {exc}") from exc
