"""Checkpoints as safetensors files: tensors plus one JSON metadata string, written atomically.

Tensor names:

    model.<name>                       model state (parameters and buffers)
    optim.<param index>.<state name>   Adam state (``exp_avg``, ``exp_avg_sq``, ``step``)
    rng.torch                          ``torch.get_rng_state()`` (uint8)

The metadata entry ``"asa_snn"`` holds JSON with ``format``, ``version``, ``config``, ``model_spec``,
``data_fingerprint``, ``epoch`` (epochs completed), ``metrics`` (that epoch's log record),
``history`` (the log records of every epoch so far: the checkpoint and the log are one commit),
``best_val_accuracy``, the optimiser's ``param_groups`` and the ``scheduler`` state. Nothing is
unpickled when reading.

Writers replace a checkpoint atomically (temporary file, fsync, ``os.replace``); readers open the
file once and parse what that one read returned, so a reader racing a writer sees the old file or
the new one, whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file
from torch import Tensor, nn

from asa_snn.errors import AsaSnnError
from asa_snn.files import atomic_write
from asa_snn.models.networks import SpikingNetwork
from asa_snn.models.registry import ModelSpec, build_model

FORMAT = "asa-snn-checkpoint"
"""The ``format`` field every checkpoint carries."""

VERSION = 1
"""The checkpoint layout version this code writes and reads."""

METADATA_KEY = "asa_snn"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Flatten ``optimizer.state_dict()``: named state tensors and the JSON-safe param groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value)
    return tensors, json.loads(json.dumps(state["param_groups"]))


def optimizer_state(tensors: dict[str, Tensor], param_groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_tensors`: a state dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": param_groups}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    metadata: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    write: Callable[[dict[str, Tensor], Path, dict[str, str]], None] = save_file,
) -> None:
    """Write model (and optimiser and torch RNG) state with ``metadata`` to ``path`` atomically.

    ``metadata`` is any JSON-safe dict; ``format``, ``version`` and ``model_spec`` are added.
    """
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    info = {**metadata, "format": FORMAT, "version": VERSION, "model_spec": spec.to_dict()}
    if optimizer is not None:
        optim, info["param_groups"] = optimizer_tensors(optimizer)
        tensors.update({k: v.detach().cpu().contiguous().clone() for k, v in optim.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    text = {METADATA_KEY: json.dumps(info)}
    atomic_write(path, lambda temp: write(tensors, temp, text))


def checkpoint_bytes(path: str | Path) -> bytes:
    """The bytes of the checkpoint file ``path``, read through one open file handle.

    Raises:
        AsaSnnError: missing or unreadable file (names it).
    """
    path = Path(path)
    if not path.is_file():
        raise AsaSnnError(f"checkpoint {path} does not exist")
    try:
        with path.open("rb") as handle:
            return handle.read()
    except OSError as exc:
        raise AsaSnnError(f"checkpoint {path}: cannot be read ({exc.strerror or exc})") from exc


def read_checkpoint(path: str | Path, data: bytes | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """All tensors and the decoded metadata of a checkpoint file.

    Args:
        path: the file (named in errors).
        data: its bytes when already read (:func:`checkpoint_bytes`); None: read them here, once.

    Raises:
        AsaSnnError: missing file, not a safetensors file, no asa-snn metadata, another format
            version (the message names the file and what was found).
    """
    path = Path(path)
    data = checkpoint_bytes(path) if data is None else data
    try:
        tensors = load(data)
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + length])
        raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    except (SafetensorError, ValueError, AttributeError) as exc:
        raise AsaSnnError(f"{path}: not a checkpoint (not a readable safetensors file: {exc})") from exc
    try:
        metadata = json.loads(raw) if raw is not None else None
    except (json.JSONDecodeError, TypeError) as exc:
        raise AsaSnnError(f"{path}: checkpoint metadata is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise AsaSnnError(f"{path}: not an asa-snn checkpoint (no {FORMAT!r} metadata)")
    if metadata.get("version") != VERSION:
        raise AsaSnnError(
            f"{path}: checkpoint format version {metadata.get('version')!r}; "
            f"this asa-snn reads version {VERSION}"
        )
    return tensors, metadata


def check_finite(path: str | Path, state: dict[str, Tensor]) -> None:
    """Raise :class:`AsaSnnError` naming the first tensor of ``state`` holding NaN or infinity.

    A model with such weights computes nothing meaningful; folding it could even report the
    fidelity goal met (every stage equally broken).
    """
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            values = tensor.detach().flatten()
            bad = int((~torch.isfinite(values)).sum())
            first = float(values[~torch.isfinite(values)][0])
            kind = "NaN" if math.isnan(first) else "infinity"
            raise AsaSnnError(
                f"{path}: tensor {name!r} holds {bad} non-finite value(s) (first: {kind}); "
                "the checkpoint cannot be used (a diverged training run; train again, e.g. with a lower "
                "optim.lr)"
            )


def check_state(path: str | Path, model: nn.Module, state: dict[str, Tensor], spec: ModelSpec) -> None:
    """Raise :class:`AsaSnnError` unless ``state`` has exactly the keys and shapes of ``model``."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: {found[k]} vs {expected[k]}"
        for k in sorted(set(found) & set(expected))
        if found[k] != expected[k]
    ]
    if missing or extra or shapes:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}" if missing else "",
                f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}" if extra else "",
                f"shape (checkpoint vs model) {shapes[:5]}" if shapes else "",
            )
            if part
        )
        raise AsaSnnError(f"{path}: checkpoint state does not fit network {spec.network!r} ({details})")


def load_checkpoint(
    path: str | Path, data: bytes | None = None
) -> tuple[ModelSpec, dict[str, Tensor], dict[str, Any]]:
    """(model spec, model state dict, metadata) of a checkpoint; the state is checked against the spec.

    ``data``: the file's bytes when already read (see :func:`read_checkpoint`).

    Raises:
        AsaSnnError: see :func:`read_checkpoint`; or the state's keys or shapes do not match the
            network the spec builds.
    """
    tensors, metadata = read_checkpoint(path, data)
    try:
        spec = ModelSpec.from_dict(metadata["model_spec"])
    except (KeyError, TypeError) as exc:
        raise AsaSnnError(f"{path}: checkpoint metadata has no valid 'model_spec' ({exc})") from exc
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_state(path, build_model(spec), state, spec)
    return spec, state, metadata


def load_model(
    path: str | Path, spec: ModelSpec | None = None, data: bytes | None = None
) -> tuple[SpikingNetwork, dict[str, Any]]:
    """Rebuild the checkpoint's model (in eval mode) and return it with the metadata.

    Args:
        path: a checkpoint file.
        spec: build this spec instead of the stored one; its state must fit.
        data: the file's bytes when already read (see :func:`read_checkpoint`).

    Raises:
        AsaSnnError: see :func:`load_checkpoint`; the state does not fit ``spec``.
    """
    stored, state, metadata = load_checkpoint(path, data)
    spec = stored if spec is None else spec
    model = build_model(spec)
    check_state(path, model, state, spec)
    model.load_state_dict(state)
    model.eval()
    return model, metadata
