"""The spiking-neuron base class, the one spike counter (and NASFR) and the recording of membrane
potentials for analysis.

Spike counting: inside ``with count_spikes(model) as counts:`` a forward hook on every spiking layer
adds up, per layer, the spikes it emitted and notes its neurons per step, its time steps T and the
samples it saw; nothing else is kept. :func:`released_nasfr` is the released code's NASFR (FACTS.md
section 1), over every spiking layer, output layer included:

    NASFR = sum over layers of spikes / (sum over layers of neurons x T x samples),

a neuron-count-weighted mean firing rate (spikes per neuron, step and sample). Training, the fold's
measurements and the analysis all count with this one definition.

Recording is off by default and then costs nothing: no tensor beyond the spikes is kept. Inside
``with record_states(model) as records:`` every neuron of ``model`` stores, after each forward
pass, its membrane potential before reset and its spikes (both detached, [T, B, ...]) and the
context manager collects them by module name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

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

    def first_order_step(self, x: Tensor) -> tuple[Tensor, Any] | None:
        """(leak, dynamics) when this neuron's forward on ``x`` is exactly the fused first-order loop
        on ``x`` itself (:func:`asa_snn.models.first_order.integrate`), so a producer of ``x`` may feed
        that loop step by step; None otherwise (the default: recording, another loop or neuron)."""
        return None

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


def released_nasfr(
    spikes: Mapping[str, float], neurons: Mapping[str, int], steps: int, samples: int
) -> float:
    """NASFR of the released code: sum of ``spikes`` / (sum of ``neurons`` x ``steps`` x ``samples``).

    Args:
        spikes: layer name -> spikes, summed over time, neurons and the ``samples`` samples (pass mean
            spikes per sample with ``samples=1``). A layer missing here counts as silent.
        neurons: layer name -> neurons per step (output elements per sample and step).
        steps: time steps T per sample.
        samples: number of samples the spikes were summed over.

    Returns:
        Spikes per neuron, step and sample (in [0, 1] for binary spikes); 0.0 when the denominator is 0.
    """
    slots = sum(neurons.values()) * steps * samples
    return sum(spikes.values()) / slots if slots else 0.0


@dataclass
class LayerSpikes:
    """What one spiking layer emitted over the forward passes seen so far.

    Attributes:
        spikes: spikes, summed over time, batch, neurons and passes (a multi-spike count adds its value).
        neurons: neurons per step: product of the output's dims after [T, B] (0 before the first pass).
        steps: time steps T of its outputs (0 before the first pass).
        samples: batch entries B, summed over passes.
    """

    spikes: float = 0.0
    neurons: int = 0
    steps: int = 0
    samples: int = 0


class SpikeCounts:
    """Per-layer spike totals filled by :func:`count_spikes` (one :class:`LayerSpikes` per layer).

    Attributes:
        layers: layer name -> :class:`LayerSpikes`, in the order the layers were given.
    """

    def __init__(self, names: list[str]) -> None:
        self.layers = {name: LayerSpikes() for name in names}

    def add(self, name: str, output: Tensor) -> None:
        """Add one forward pass of layer ``name``: ``output`` are its spikes [T, B, ...].

        Raises:
            AsaSnnError: ``output`` is not a tensor [T, B, ...], or its T or neurons per step differ from
                an earlier pass of the same layer (one NASFR needs one T and one layer size).
        """
        if not isinstance(output, Tensor) or output.ndim < 2:
            found = f"shape {tuple(output.shape)}" if isinstance(output, Tensor) else type(output).__name__
            raise AsaSnnError(f"count_spikes: layer {name!r} must output spikes [T, B, ...], got {found}")
        layer = self.layers[name]
        steps, neurons = int(output.shape[0]), math.prod(output.shape[2:])
        if layer.samples and (steps, neurons) != (layer.steps, layer.neurons):
            raise AsaSnnError(
                f"count_spikes: layer {name!r} output T={steps} steps of {neurons} neurons after "
                f"T={layer.steps} steps of {layer.neurons} neurons; every pass must have the same T and size"
            )
        layer.spikes += float(output.detach().sum())
        layer.steps, layer.neurons = steps, neurons
        layer.samples += int(output.shape[1])

    def _seen(self) -> dict[str, LayerSpikes]:
        return {name: layer for name, layer in self.layers.items() if layer.samples}

    def _common(self, field: str) -> int:
        values = {name: getattr(layer, field) for name, layer in self._seen().items()}
        if len(set(values.values())) > 1:
            raise AsaSnnError(f"count_spikes: the layers saw different {field}: {values}")
        return next(iter(values.values()), 0)

    @property
    def steps(self) -> int:
        """Time steps T of the passes (0 before any). Raises AsaSnnError if the layers disagree."""
        return self._common("steps")

    @property
    def samples(self) -> int:
        """Samples seen (0 before any). Raises AsaSnnError if the layers disagree."""
        return self._common("samples")

    @property
    def spikes(self) -> dict[str, float]:
        """Layer name -> total spikes (every layer, 0.0 for one that never ran)."""
        return {name: layer.spikes for name, layer in self.layers.items()}

    @property
    def neurons(self) -> dict[str, int]:
        """Layer name -> neurons per step, for the layers that ran."""
        return {name: layer.neurons for name, layer in self._seen().items()}

    def per_sample(self) -> dict[str, float]:
        """Layer name -> mean spikes per sample (every layer; 0.0 when nothing ran)."""
        samples = max(self.samples, 1)
        return {name: spikes / samples for name, spikes in self.spikes.items()}

    @property
    def nasfr(self) -> float:
        """:func:`released_nasfr` over every counted layer (0.0 when nothing ran)."""
        return released_nasfr(self.spikes, self.neurons, self.steps, self.samples)


@contextmanager
def count_spikes(model: nn.Module, layers: Mapping[str, nn.Module] | None = None) -> Iterator[SpikeCounts]:
    """Count the spikes of ``model``'s spiking layers over the forward passes run inside the context.

    Usage::

        with count_spikes(model) as counts:
            model(x)  # x [T, B, ...]
        counts.layers["blocks.0.neuron"].spikes, counts.nasfr

    Args:
        model: the network run inside the context.
        layers: layer name -> module whose output are spikes [T, B, ...]; default every
            :class:`SpikingNeuron` of ``model``, named by module path (``""`` for ``model`` itself).

    Yields:
        The :class:`SpikeCounts`, filled as the passes run; it stays valid after the context.
        The hooks are removed on exit, also when the body raises.

    Raises:
        AsaSnnError: there is no layer to count.
    """
    if layers is None:
        layers = {name: m for name, m in model.named_modules() if isinstance(m, SpikingNeuron)}
    if not layers:
        raise AsaSnnError(f"count_spikes: model {type(model).__name__} has no spiking layer to count")
    counts = SpikeCounts(list(layers))
    handles = []
    try:
        for name, module in layers.items():
            handles.append(module.register_forward_hook(partial(_add, counts, name)))
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def _add(counts: SpikeCounts, name: str, _module: nn.Module, _inputs: object, output: Tensor) -> None:
    counts.add(name, output)
