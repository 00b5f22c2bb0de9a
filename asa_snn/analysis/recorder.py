"""One streaming pass over a dataset that keeps only bounded-size statistics per spiking layer.

``measure(model, dataset, ...)`` runs the model in eval mode under ``torch.no_grad`` batch by batch
inside :func:`asa_snn.models.recording.record_states` and folds every batch into accumulators whose
size depends on the layer shapes and T, never on the number of samples:

per spiking layer (neuron output viewed as [T, C, H, W]; a linear layer's F neurons as [T, F, 1, 1])

- ``fired`` [T, C, H, W]: samples in which the neuron emitted at least one spike at step t
  (a multi-spike IAF counts as firing when its count is > 0); ``spikes`` the total spike counts.
- ``hist`` [T, C, bins + 2]: histogram per channel and step of the layer's ``quantity``
  (:data:`MPD_QUANTITIES`: the membrane potential U before reset, the default and the paper's
  Definition 5, or the input current X the neuron receives after attention, which the released
  code's MPD figures show) over the fixed edges ``v_th * linspace(low, high, bins + 1)``
  (:class:`HistogramSpec`, in units of the layer threshold); index 0 counts values below the first
  edge (underflow), the last index values at or above the last edge (overflow).
- ``mem_sum``, ``mem_sq``, ``mem_count`` [T, C]: running sum, sum of squares and count of the finite
  values of the same quantity (for the variance); ``qe_sum`` [T, C]: sum of (U - s * v_th)^2 (always
  the membrane potential U).
- ``nonfinite``: number of entries whose U (or X, when X is histogrammed) is NaN / inf; they are
  left out of every statistic above and reported (never silently plotted).
- ``neuron``, ``unbounded_below``: the neuron class and whether its potential has no lower bound
  (a non-leaky IAF without ``min_v``), which makes its negative potentials, and QE, grow without limit.
- ``background_spikes`` [T, C] (only with masks): spikes on background positions. The input
  resolution mask [T, H_in, W_in] is brought to the layer's H x W by adaptive max pooling: a layer
  position is foreground when any input pixel of its window is foreground.

per synaptic module (every ``Conv2d`` / ``Linear`` outside an attention module): the per-position sum of
its input over steps and samples (``input_sum``, the shape of one input frame), the number of non-zero
input entries, and whether every input value was a non-negative integer (a spike / event count).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.models.recording import SpikingNeuron, record_states

MaskSource = Callable[[int], np.ndarray]
"""Sample index -> bool [T, H_in, W_in] foreground (object) mask at input resolution."""

MPD_QUANTITIES: dict[str, str] = {
    "membrane": "membrane potential U before reset",
    "current": "input current X into the neuron (after attention, if any)",
}
"""What the membrane histograms (and their PTD and variance) can show, with the words figures and
report.md use. ``membrane``: the paper's Definition 5. ``current``: the neuron's input X (after batch
norm, pooling and attention), what the released code collects for its MPD figures (it also averages X
over the test samples before histogramming the H x W positions; here every neuron and sample counts).
"""


@dataclass(frozen=True)
class HistogramSpec:
    """Membrane histogram bins in units of the layer threshold: ``bins`` bins over ``[low, high) * v_th``."""

    low: float = -2.0
    high: float = 2.0
    bins: int = 80

    def __post_init__(self) -> None:
        if not (self.high > self.low and self.bins >= 3):
            raise AsaSnnError(f"HistogramSpec: need high > low and bins >= 3, got {self}")

    def edges(self, v_th: float) -> np.ndarray:
        """float64 [bins + 1]: bin edges in membrane units."""
        return v_th * np.linspace(self.low, self.high, self.bins + 1)


@dataclass
class LayerStats:
    """Accumulated statistics of one spiking layer (module docstring). Shapes use T steps, C channels."""

    name: str
    v_th: float
    shape: tuple[int, int, int]
    timesteps: int
    edges: np.ndarray
    fired: np.ndarray
    spikes: np.ndarray
    hist: np.ndarray
    mem_sum: np.ndarray
    mem_sq: np.ndarray
    mem_count: np.ndarray
    qe_sum: np.ndarray
    nonfinite: int = 0
    background_spikes: np.ndarray | None = None
    quantity: str = "membrane"
    neuron: str = ""
    unbounded_below: bool = False

    @classmethod
    def empty(
        cls,
        name: str,
        v_th: float,
        steps: int,
        shape: tuple[int, int, int],
        spec: HistogramSpec,
        *,
        quantity: str = "membrane",
        neuron: str = "",
        unbounded_below: bool = False,
    ):
        """Zeroed accumulators for a layer of ``shape`` (C, H, W) over ``steps`` steps."""
        _check_quantity(quantity)
        channels = shape[0]
        return cls(
            name=name,
            v_th=float(v_th),
            shape=shape,
            timesteps=steps,
            edges=spec.edges(float(v_th)),
            fired=np.zeros((steps, *shape), np.int64),
            spikes=np.zeros((steps, *shape), np.float64),
            hist=np.zeros((steps, channels, spec.bins + 2), np.int64),
            mem_sum=np.zeros((steps, channels)),
            mem_sq=np.zeros((steps, channels)),
            mem_count=np.zeros((steps, channels), np.int64),
            qe_sum=np.zeros((steps, channels)),
            quantity=quantity,
            neuron=neuron,
            unbounded_below=unbounded_below,
        )


def _check_quantity(quantity: str) -> None:
    if quantity not in MPD_QUANTITIES:
        raise AsaSnnError(
            f"membrane histogram quantity {quantity!r} is unknown; "
            f"expected one of {', '.join(MPD_QUANTITIES)}"
        )


@dataclass
class SynapseStats:
    """Input statistics of one synaptic module (conv / linear), summed over steps and samples.

    Attributes:
        name: module name.
        order: call position in the forward pass (0 = the first synaptic module, fed by the input).
        input_shape / output_shape: one frame's input and output shape (without T and batch).
        input_sum: float64 [input_shape], sum of the input values per position.
        nonzero: number of non-zero input entries.
        integer_valued: every input value seen was a non-negative integer.
    """

    name: str
    order: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_sum: np.ndarray
    nonzero: int = 0
    integer_valued: bool = True


@dataclass
class Measurements:
    """Result of :func:`measure`: statistics per spiking layer (forward order) and per synaptic module."""

    n_samples: int
    timesteps: int
    hist_spec: HistogramSpec
    layers: dict[str, LayerStats]
    synapses: dict[str, SynapseStats] = field(default_factory=dict)
    attention_shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    has_masks: bool = False
    quantity: str = "membrane"


def _as_chw(x: Tensor) -> Tensor:
    """[T, B, C, H, W] unchanged, [T, B, F] -> [T, B, F, 1, 1]."""
    if x.ndim == 5:
        return x
    if x.ndim == 3:
        return x[..., None, None]
    raise AsaSnnError(f"recorder: neuron output must be [T, B, C, H, W] or [T, B, F], got {tuple(x.shape)}")


def accumulate_layer(
    stats: LayerStats,
    membrane: Tensor,
    spikes: Tensor,
    background: Tensor | None,
    current: Tensor | None = None,
) -> None:
    """Fold one batch into ``stats``.

    Args:
        stats: the layer's accumulators.
        membrane: U before reset, [T, B, C, H, W] (or [T, B, F]).
        spikes: spikes, same shape.
        background: bool [T, B, H, W] background positions, or None.
        current: the neuron's input X, same shape; required when ``stats.quantity`` is ``current``.
    """
    u = _as_chw(membrane).detach().cpu().double()
    s = _as_chw(spikes).detach().cpu().double()
    if stats.quantity == "current":
        if current is None:
            raise AsaSnnError(
                f"recorder: layer {stats.name!r} histograms the input current but none was given"
            )
        v = _as_chw(current).detach().cpu().double()
        finite = torch.isfinite(v) & torch.isfinite(u)
    else:
        v = u
        finite = torch.isfinite(u)
    steps, _, channels = v.shape[:3]
    stats.nonfinite += int((~finite).sum())
    v0 = torch.where(finite, v, torch.zeros_like(v))
    u0 = torch.where(finite, u, torch.zeros_like(u))
    weight = finite.double()
    stats.fired += (s > 0).sum(1).numpy()
    stats.spikes += s.sum(1).numpy()
    stats.mem_sum += v0.sum((1, 3, 4)).numpy()
    stats.mem_sq += (v0 * v0).sum((1, 3, 4)).numpy()
    stats.mem_count += finite.sum((1, 3, 4)).numpy()
    stats.qe_sum += ((u0 - s * stats.v_th) ** 2 * weight).sum((1, 3, 4)).numpy()
    bins = stats.hist.shape[-1] - 2
    low, high = stats.edges[0], stats.edges[-1]
    position = torch.floor((v0 - low) / (high - low) * bins).clamp(-1, bins) + 1
    slot = torch.arange(steps * channels).view(steps, 1, channels, 1, 1) * (bins + 2)
    index = (slot + position.long()).flatten()
    counts = torch.bincount(index, weights=weight.flatten(), minlength=steps * channels * (bins + 2))
    stats.hist += counts.round().long().view(steps, channels, bins + 2).numpy()
    if background is not None:
        on_background = s * background[:, :, None].cpu().double()
        stats.background_spikes += on_background.sum((1, 3, 4)).numpy()


def resize_masks(masks: Tensor, height: int, width: int) -> Tensor:
    """bool [T, B, H_in, W_in] -> bool [T, B, height, width] by adaptive max pooling (any pixel counts)."""
    pooled = F.adaptive_max_pool2d(masks.float().flatten(0, 1)[:, None], (height, width))
    return pooled[:, 0].unflatten(0, masks.shape[:2]) > 0


def _synaptic_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear) and "attention" not in name.split(".")
    ]


class _SynapseHooks:
    """Forward hooks that fold the input of every synaptic module into :class:`SynapseStats`."""

    def __init__(self, model: nn.Module) -> None:
        self.stats: dict[str, SynapseStats] = {}
        self.attention_shapes: dict[str, tuple[int, int, int]] = {}
        self.handles = [
            module.register_forward_hook(self._synapse_hook(name))
            for name, module in _synaptic_modules(model)
        ]
        self.handles += [
            module.register_forward_hook(self._attention_hook(name))
            for name, module in model.named_modules()
            if name.split(".")[-1] == "attention"
        ]

    def _synapse_hook(self, name: str):
        def hook(_module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0].detach().cpu().double()
            if name not in self.stats:
                self.stats[name] = SynapseStats(
                    name, len(self.stats), tuple(x.shape[1:]), tuple(output.shape[1:]), np.zeros(x.shape[1:])
                )
            stats = self.stats[name]
            stats.input_sum += x.sum(0).numpy()
            stats.nonzero += int((x != 0).sum())
            stats.integer_valued &= bool(((x >= 0) & (x == torch.round(x))).all())

        return hook

    def _attention_hook(self, name: str):
        def hook(_module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            if inputs and inputs[0].ndim == 5:
                self.attention_shapes[name] = tuple(int(v) for v in inputs[0].shape[2:])

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class _InputHooks:
    """Forward hooks that keep the latest input X of each named neuron (only for ``quantity="current"``)."""

    def __init__(self, modules: dict[str, nn.Module], names: Sequence[str]) -> None:
        self.inputs: dict[str, Tensor] = {}
        self.handles = [modules[name].register_forward_hook(self._hook(name)) for name in names]

    def _hook(self, name: str):
        def hook(_module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            self.inputs[name] = inputs[0].detach()

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def neuron_kind(module: nn.Module) -> tuple[str, bool]:
    """(class name, unbounded below): a neuron with a ``min_v`` attribute set to None (IAF) has no lower
    bound on its potential; leaky neurons (LIF, PLIF, CUBA) decay towards 0 and count as bounded."""
    return type(module).__name__, hasattr(module, "min_v") and module.min_v is None


def _load_batch(dataset: Sequence, indices: range) -> Tensor:
    frames = []
    for index in indices:
        item = dataset[index]
        x = item[0] if isinstance(item, tuple | list) else item
        frames.append(torch.as_tensor(np.asarray(x), dtype=torch.float32))
    return torch.stack(frames, 1)


def _load_masks(masks: MaskSource, indices: range, expected: tuple[int, int, int]) -> Tensor:
    loaded = []
    for index in indices:
        mask = np.asarray(masks(index))
        if mask.shape != expected:
            raise InputFormatError(
                f"masks: foreground mask of sample {index} must be bool [T, H, W] = {expected}, "
                f"got {mask.shape}"
            )
        loaded.append(torch.from_numpy(mask.astype(bool)))
    return torch.stack(loaded, 1)


def _check_request(
    model: nn.Module, dataset: Sequence, max_samples: int | None, layers
) -> tuple[int, list[str]]:
    available = len(dataset)
    wanted = available if max_samples is None else int(max_samples)
    if wanted < 1 or wanted > available:
        raise AsaSnnError(
            f"measure: max_samples={max_samples} asks for {wanted} samples but the dataset holds {available}"
        )
    names = [name for name, module in model.named_modules() if isinstance(module, SpikingNeuron)]
    if layers is not None:
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise AsaSnnError(
                f"measure: unknown layer(s) {', '.join(unknown)}; valid spiking layers are {', '.join(names)}"
            )
        names = [name for name in names if name in set(layers)]
    first = dataset[0]
    frame_shape = tuple(np.asarray(first[0] if isinstance(first, tuple | list) else first).shape)
    expected = getattr(model, "input_shape", None)
    if expected is not None and (len(frame_shape) != 4 or tuple(frame_shape[1:]) != tuple(expected)):
        raise AsaSnnError(
            f"measure: the model expects frames [T, C, H, W] with C, H, W = {tuple(expected)}, "
            f"but the dataset's first sample has shape {frame_shape}"
        )
    return wanted, names


def measure(
    model: nn.Module,
    dataset: Sequence,
    *,
    batch_size: int = 16,
    max_samples: int | None = None,
    masks: MaskSource | None = None,
    layers: Sequence[str] | None = None,
    hist_spec: HistogramSpec | None = None,
    quantity: str = "membrane",
    progress: bool = True,
) -> Measurements:
    """Run ``model`` over the first ``max_samples`` items of ``dataset`` and accumulate statistics.

    Args:
        model: a spiking network mapping frames [T, B, C, H, W] to scores; it runs on the device
            its parameters are on (batches are moved there; statistics accumulate on the CPU).
        dataset: indexable, items ``(frames [T, C, H, W], label)``.
        batch_size: samples per forward pass (memory grows with it, not with the dataset).
        max_samples: number of samples (default: all).
        masks: sample index -> bool [T, H, W] foreground masks at input resolution, or None.
        layers: names of the spiking layers to keep (default: all).
        hist_spec: membrane histogram bins (default :class:`HistogramSpec`).
        quantity: what the histograms, PTD and variance describe, a key of :data:`MPD_QUANTITIES`:
            ``membrane`` (U before reset, default) or ``current`` (X, the neuron's input after attention).
            QE always uses U.
        progress: show a rich progress bar.

    Raises:
        AsaSnnError: unknown layer names (the message lists the valid ones), more samples asked
            than the dataset holds, frames whose shape does not match the model's input, or an
            unknown ``quantity``.
    """
    if batch_size < 1:
        raise AsaSnnError(f"measure: batch_size must be >= 1, got {batch_size}")
    _check_quantity(quantity)
    count, names = _check_request(model, dataset, max_samples, layers)
    spec = hist_spec or HistogramSpec()
    modules = dict(model.named_modules())
    stats: dict[str, LayerStats] = {}
    hooks = _SynapseHooks(model)
    inputs = _InputHooks(modules, names if quantity == "current" else [])
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    bar = _progress(progress)
    try:
        task = bar.add_task("measuring", total=count) if bar else None
        with torch.no_grad(), record_states(model) as records:
            for start in range(0, count, batch_size):
                indices = range(start, min(start + batch_size, count))
                frames = _load_batch(dataset, indices)
                model(frames.to(device))
                mask = None
                if masks is not None:
                    mask = _load_masks(masks, indices, (frames.shape[0], *frames.shape[3:]))
                for name in (n for n in records if n in names):
                    record = records[name]
                    membrane, spikes = _as_chw(record.membrane), _as_chw(record.spikes)
                    if name not in stats:
                        shape = tuple(int(v) for v in membrane.shape[2:])
                        kind, unbounded = neuron_kind(modules[name])
                        stats[name] = LayerStats.empty(
                            name,
                            modules[name].v_th,
                            membrane.shape[0],
                            shape,
                            spec,
                            quantity=quantity,
                            neuron=kind,
                            unbounded_below=unbounded,
                        )
                        if mask is not None and shape[1] * shape[2] > 1:
                            stats[name].background_spikes = np.zeros((membrane.shape[0], shape[0]))
                    background = None
                    if stats[name].background_spikes is not None:
                        background = ~resize_masks(mask, *membrane.shape[3:])
                    accumulate_layer(stats[name], membrane, spikes, background, inputs.inputs.get(name))
                if bar:
                    bar.advance(task, len(indices))
    finally:
        if bar:
            bar.stop()
        hooks.remove()
        inputs.remove()
        model.train(was_training)
    steps = next(iter(stats.values())).timesteps
    return Measurements(
        count, steps, spec, stats, hooks.stats, hooks.attention_shapes, masks is not None, quantity
    )


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    bar.start()
    return bar
