"""Checkpoints as safetensors files: tensors plus one JSON metadata string, written atomically.

Tensor names:

    model.<name>                       model state (parameters and buffers)
    optim.<param index>.<state name>   Adam state (``exp_avg``, ``exp_avg_sq``, ``step``)
    rng.torch                          ``torch.get_rng_state()`` (uint8)

The metadata entry ``"asa_snn"`` holds JSON with ``format``, ``version``, ``config``, ``model_spec``,
``data_fingerprint``, ``epoch`` (epochs completed), ``metrics``, ``best_val_accuracy``, the
optimiser's ``param_groups`` and the ``scheduler`` state. Nothing is unpickled when reading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from asa_snn.errors import AsaSnnError
from asa_snn.models.networks import SpikingNetwork
from asa_snn.models.registry import ModelSpec, build_model

FORMAT = "asa-snn-checkpoint"
"""The ``format`` field every checkpoint carries."""

VERSION = 1
"""The checkpoint layout version this code writes and reads."""

METADATA_KEY = "asa_snn"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temp)`` on a temporary file beside ``path``, then ``os.replace`` it onto ``path``.

    If ``write`` raises (or the process is interrupted with Ctrl-C), the temporary file is removed
    and any previous ``path`` is left untouched.
    """
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


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


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """All tensors and the decoded metadata of a checkpoint file.

    Raises:
        AsaSnnError: missing file, not a safetensors file, no asa-snn metadata, another format
            version (the message names the file and what was found).
    """
    path = Path(path)
    if not path.is_file():
        raise AsaSnnError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(path)
        with safe_open(path, framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise AsaSnnError(f"{path}: not a checkpoint (not a readable safetensors file: {exc})") from exc
    try:
        metadata = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError as exc:
        raise AsaSnnError(f"{path}: checkpoint metadata is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise AsaSnnError(f"{path}: not an asa-snn checkpoint (no {FORMAT!r} metadata)")
    if metadata.get("version") != VERSION:
        raise AsaSnnError(
            f"{path}: checkpoint format version {metadata.get('version')!r}; "
            f"this asa-snn reads version {VERSION}"
        )
    return tensors, metadata


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


def load_checkpoint(path: str | Path) -> tuple[ModelSpec, dict[str, Tensor], dict[str, Any]]:
    """(model spec, model state dict, metadata) of a checkpoint; the state is checked against the spec.

    Raises:
        AsaSnnError: see :func:`read_checkpoint`; or the state's keys or shapes do not match the
            network the spec builds.
    """
    tensors, metadata = read_checkpoint(path)
    try:
        spec = ModelSpec.from_dict(metadata["model_spec"])
    except (KeyError, TypeError) as exc:
        raise AsaSnnError(f"{path}: checkpoint metadata has no valid 'model_spec' ({exc})") from exc
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_state(path, build_model(spec), state, spec)
    return spec, state, metadata


def load_model(path: str | Path, spec: ModelSpec | None = None) -> tuple[SpikingNetwork, dict[str, Any]]:
    """Rebuild the checkpoint's model (in eval mode) and return it with the metadata.

    Args:
        path: a checkpoint file.
        spec: build this spec instead of the stored one; its state must fit.

    Raises:
        AsaSnnError: see :func:`load_checkpoint`; the state does not fit ``spec``.
    """
    stored, state, metadata = load_checkpoint(path)
    spec = stored if spec is None else spec
    model = build_model(spec)
    check_state(path, model, state, spec)
    model.load_state_dict(state)
    model.eval()
    return model, metadata
