"""Chips by name: every folder ``asa_snn/chips/<name>/`` with a ``chip.py`` is a chip.

A chip's ``chip.py`` builds its :class:`~asa_snn.chips.base.Chip` and calls :func:`register`;
the registry imports those modules the first time a chip is asked for, so adding a chip is adding a
folder. :func:`get_backend` resolves a backend name over every chip's backends and the generic
ones (:data:`~asa_snn.simulators.backends.GENERIC_BACKENDS`).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from asa_snn.chips.base import Chip
from asa_snn.energy.model import GENERIC_PRESETS, EnergyModel
from asa_snn.errors import AsaSnnError, MissingDependencyError
from asa_snn.simulators.backends import GENERIC_BACKENDS
from asa_snn.simulators.base import Backend

_CHIPS: dict[str, Chip] = {}
_DISCOVERED: list[bool] = []


def register(chip: Chip) -> Chip:
    """Make ``chip`` known by its name; returns it.

    Raises:
        AsaSnnError: another chip or a generic backend already uses the name or one of its backends.
    """
    other = _CHIPS.get(chip.name)
    if other is not None and other is not chip:
        raise AsaSnnError(f"chip {chip.name!r} is registered twice")
    taken = {name for c in _CHIPS.values() if c.name != chip.name for name in c.backends}
    clashes = sorted((set(chip.backends) & taken) | (set(chip.backends) & set(GENERIC_BACKENDS)))
    if clashes:
        raise AsaSnnError(f"chip {chip.name!r}: backend name(s) {clashes} are taken")
    _CHIPS[chip.name] = chip
    return chip


def unregister(name: str) -> None:
    """Forget the chip called ``name`` (for chips registered at run time, e.g. in tests)."""
    _CHIPS.pop(name, None)


def _discover() -> None:
    """Import ``asa_snn.chips.<name>.chip`` of every chip folder once."""
    if _DISCOVERED:
        return
    _DISCOVERED.append(True)
    folder = Path(__file__).parent
    for info in pkgutil.iter_modules([str(folder)]):
        if info.ispkg and (folder / info.name / "chip.py").is_file():
            importlib.import_module(f"asa_snn.chips.{info.name}.chip")


def chips() -> dict[str, Chip]:
    """Every known chip, by name."""
    _discover()
    return dict(_CHIPS)


def get_chip(name: str) -> Chip:
    """The chip called ``name``; an unknown name is an error listing the chips."""
    known = chips()
    if name not in known:
        raise AsaSnnError(f"unknown chip {name!r}; expected one of {', '.join(sorted(known))}")
    return known[name]


def check_target(target: str, where: str = "graph") -> str:
    """``target`` when it names a registered chip or ``generic``; else an error listing them.

    Raises:
        AsaSnnError: an unknown target (a graph folded for a chip this installation lacks, or a
            hand-edited graph.json).
    """
    known = sorted(chips())
    if target != "generic" and target not in known:
        raise AsaSnnError(
            f"{where}: target {target!r} is not a known chip; expected one of {', '.join(known)} or 'generic'"
        )
    return target


def backend_names() -> list[str]:
    """Every backend name: each chip's backends, then the generic ones."""
    return [*(name for chip in chips().values() for name in chip.backends), *GENERIC_BACKENDS]


def chip_of_backend(name: str) -> Chip | None:
    """The chip a backend belongs to, or None for a generic backend."""
    return next((chip for chip in chips().values() if name in chip.backends), None)


def get_backend(name: str) -> Backend:
    """The backend called ``name``, ready to run.

    Raises:
        AsaSnnError: unknown name (lists the known ones).
        MissingDependencyError: the backend's package is missing (says how to install it).
    """
    chip = chip_of_backend(name)
    if chip is not None:
        backend = chip.backends[name]()
    elif name in GENERIC_BACKENDS:
        backend = GENERIC_BACKENDS[name]()
    else:
        raise AsaSnnError(f"unknown backend {name!r}; expected one of {', '.join(backend_names())}")
    reason = backend.unavailable_reason()
    if reason:
        raise MissingDependencyError(f"backend {name!r} is unavailable: {reason}")
    return backend


def energy_presets() -> dict[str, EnergyModel]:
    """Every energy preset: the generic op-energy ones and each chip's model, by name."""
    return {**GENERIC_PRESETS, **{chip.energy.name: chip.energy for chip in chips().values()}}
