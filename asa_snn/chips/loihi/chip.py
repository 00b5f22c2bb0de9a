"""Loihi (Intel, through Lava / lava-dl netx) as one :class:`~asa_snn.chips.base.Chip`.

Everything about Loihi lives in this folder: ``mapping.py`` (cores, synapses, axons),
``quantizer.py`` (netx integers), ``netx_export.py``, ``simulator.py`` (bit-accurate CUBA),
``lava_backend.py`` and ``board.py`` (Lava), ``energy.py``.
"""

from __future__ import annotations

from pathlib import Path

from asa_snn.chips.base import BoardReport, Chip
from asa_snn.chips.loihi.energy import LOIHI_ENERGY
from asa_snn.chips.loihi.mapping import check_loihi, loihi_core_layout
from asa_snn.chips.loihi.quantizer import LoihiQuantizer
from asa_snn.chips.registry import register
from asa_snn.convert.graph import FoldedGraph
from asa_snn.simulators.base import Backend


def _simulator() -> Backend:
    from asa_snn.chips.loihi.simulator import LoihiSimulator

    return LoihiSimulator()


def _lava() -> Backend:
    from asa_snn.chips.loihi.lava_backend import LavaBackend

    return LavaBackend()


def _deploy(graph: FoldedGraph, **options: object) -> BoardReport:
    from asa_snn.chips.loihi.board import deploy_loihi

    return deploy_loihi(graph, **options)


def _netx_export(graph: FoldedGraph, folder: Path) -> str:
    from asa_snn.chips.loihi.netx_export import write_netx

    return write_netx(graph, folder / "network.net").name


LOIHI = register(
    Chip(
        name="loihi",
        neuron_kinds=("cuba",),
        quantizer=LoihiQuantizer(),
        backends={"loihi": _simulator, "lava": _lava},
        check=check_loihi,
        core_layout=loihi_core_layout,
        energy=LOIHI_ENERGY,
        compared_backends=("lava",),
        exports={"netx": _netx_export},
        deploy=_deploy,
    )
)
"""The Loihi chip. Its graph is not compared with onnx / norse: they have no one-step synaptic
delay per layer, so they cannot match Loihi exactly."""
