"""Backends that run any folded graph, whatever chip it was folded for.

Chip-specific backends (the bit-accurate Speck and Loihi simulators, sinabs, Lava) belong to their
chip (:mod:`asa_snn.chips`); :func:`asa_snn.chips.registry.get_backend` resolves both kinds.
"""

from __future__ import annotations

from collections.abc import Callable

from asa_snn.simulators.base import Backend


def _norse() -> Backend:
    from asa_snn.simulators.norse_backend import NorseBackend

    return NorseBackend()


def _onnx() -> Backend:
    from asa_snn.simulators.onnx_backend import OnnxBackend

    return OnnxBackend()


GENERIC_BACKENDS: dict[str, Callable[[], Backend]] = {"norse": _norse, "onnx": _onnx}
"""Backend name -> factory: Norse runs the graph's NIR export, onnxruntime its ONNX export."""
