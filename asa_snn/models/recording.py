"""The spiking-neuron base class and the recording of membrane potentials for analysis.

Recording is off by default and then costs nothing: no tensor beyond the spikes is kept. Inside
``with record_states(model) as records:`` every neuron of ``model`` stores, after each forward
pass, its membrane potential before reset and its spikes (both detached, [T, B, ...]) and the
context manager collects them by module name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from asa_snn.errors import AsaSnnError, InputFormatError


@dataclass(frozen=True)
class NeuronRecord:
    """What one neuron layer did in one forward pass.

    Attributes:
        membrane: membrane potential before reset, [T, B, ...], detached.
        spikes: spike output, [T, B, ...], detached.
    """

    membrane: Tensor
    spikes: Tensor


class SpikingNeuron(nn.Module):
    """Base of every multi-step neuron: input check and optional recording.

    Attributes:
        record: when True, each forward pass stores a :class:`NeuronRecord` in ``last_record``.
        last_record: the record of the latest forward pass while ``record`` is True, else None.
    """

    def __init__(self) -> None:
        super().__init__()
        self.record = False
        self.last_record: NeuronRecord | None = None

    def check_input(self, x: Tensor) -> None:
        """Raise :class:`InputFormatError` unless ``x`` is a floating tensor of shape [T, B, ...], T >= 1."""
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0 or not x.is_floating_point():
            found = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise InputFormatError(
                f"{type(self).__name__}: input x must be a floating-point tensor of shape [T, B, ...] "
                f"with T >= 1 time steps, "
                f"got {found}"
            )

    def finish(self, spikes: Tensor, membrane: Tensor | None) -> Tensor:
        """Store the record when recording (``membrane`` is then not None) and return the spikes."""
        if self.record:
            self.last_record = NeuronRecord(membrane=membrane.detach(), spikes=spikes.detach())
        return spikes


def _collect(
    records: dict[str, NeuronRecord], name: str, module: SpikingNeuron, _inputs: object, _output: object
) -> None:
    records[name] = module.last_record


@contextmanager
def record_states(model: nn.Module) -> Iterator[dict[str, NeuronRecord]]:
    """Record membrane (before reset) and spikes of every :class:`SpikingNeuron` in ``model``.

    Usage::

        with record_states(model) as records:
            model(x)
        records["features.2"].membrane  # [T, B, ...]

    The dictionary maps module names (as :meth:`torch.nn.Module.named_modules` gives them; ``""``
    for ``model`` itself) to the record of the latest forward pass. On exit the neurons' ``record``
    flags are restored and the records they held are dropped; the dictionary stays valid.

    Raises:
        AsaSnnError: ``model`` contains no spiking neuron.
    """
    neurons = [(name, m) for name, m in model.named_modules() if isinstance(m, SpikingNeuron)]
    if not neurons:
        raise AsaSnnError(f"record_states: model {type(model).__name__} contains no SpikingNeuron to record")
    records: dict[str, NeuronRecord] = {}
    previous = [m.record for _, m in neurons]
    handles = []
    for name, module in neurons:
        module.record = True
        handles.append(module.register_forward_hook(partial(_collect, records, name)))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
        for (_, module), flag in zip(neurons, previous, strict=True):
            module.record = flag
            if not flag:
                module.last_record = None
