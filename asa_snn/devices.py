"""Which torch device a run uses: one resolver for training, analysis, folding and the demo.

A device name is ``auto`` (CUDA when present, else Apple's MPS when present, else the CPU),
``cpu``, ``cuda``, ``cuda:N`` or ``mps``. Checkpoints are always written from CPU copies, so a
model trained on a GPU loads on a CPU-only machine.
"""

from __future__ import annotations

import re

import torch

from .errors import AsaSnnError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto", where: str = "device") -> torch.device:
    """The torch device for ``name``; ``where`` names the setting in error messages.

    Raises AsaSnnError for a malformed name, or for a device this machine does not have (with
    what it does have), rather than failing later inside the first tensor copy.
    """
    text = str(name).strip().lower()
    if not _PATTERN.match(text):
        raise AsaSnnError(f"{where}: {name!r} is not a device; expected one of {', '.join(DEVICE_CHOICES)}")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if text.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (torch " + torch.__version__ + ")"
            raise AsaSnnError(f"{where}: {name!r} requested but this machine has {have}; use 'cpu' or 'auto'")
    if text == "mps" and not _mps_available():
        raise AsaSnnError(f"{where}: 'mps' requested but this machine has no MPS device; use 'cpu' or 'auto'")
    return torch.device(text)


def available_devices() -> list[torch.device]:
    """The CPU plus every CUDA device present: what device-parametrized tests run on."""
    found = [torch.device("cpu")]
    if torch.cuda.is_available():
        found += [torch.device("cuda", index) for index in range(torch.cuda.device_count())]
    return found
