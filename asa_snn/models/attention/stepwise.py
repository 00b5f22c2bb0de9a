"""ASA's passes over the input current X [T, B, C, H, W] as one autograd Function.

ASA (:mod:`asa_snn.models.attention.asa`) reads X three times: channel statistics for the
importance, masked spatial statistics for the two maps, and the final mix. Written with
whole-tensor PyTorch operations, each pass leaves several [T, B, C, H, W] temporaries (masked
copies, max-tie masks, partial gradients) that stream through memory, and autograd adds the three
passes' input gradients together. :func:`spatial_attention_passes` computes the same values and
the same gradients (``amax``'s rule included: a gradient is shared evenly by all entries equal to
the max) with loops over the time steps, whose [B, C, H, W] temporaries stay in cache, and a
backward pass written out by hand that writes the input gradient once, into one tensor. The loops
run over chunks of steps (:func:`step_chunks`): one step at a time on the CPU, where the cache is
what counts, and all steps at once on a GPU, where each operation is a kernel launch and a loop
over T would multiply the launches by T. The small
parts between the passes (importance, top-k selection, the two 3x3 convolutions) are ordinary
autograd graphs over [T, B, C] and [B, H, W] tensors, built inside the Function and
differentiated from its backward. The forward pass keeps each step's maxima of the two groups
([T, 2, B, H, W]); from them the backward pass finds the entries at each group's maximum by
looking only at the steps that reach it.

:func:`spatial_attention_then_neuron` goes one step further where a first-order neuron follows
(ASA's conv blocks on the CPU, :class:`~asa_snn.models.blocks.ConvBlock`): each step's Y feeds the
neuron's loop from a one-step buffer, and in the backward pass each step's gradient from the
neuron's reverse loop goes through the mix at once, so neither Y nor its gradient exists as a
[T, B, C, H, W] tensor (a training step of arch A 0 to 5 % faster, benchmarks/README.md).

Masks may take any value; ASA's are 0/1. Sums over steps accumulate in at least float32 and tie
counts in int64, as PyTorch's reductions do, so bfloat16 and float16 inputs lose no more than the
reference. Differentiable once. Each pass runs under a ``torch.profiler.record_function`` label
(``asa.channel_statistics``, ``asa.select``, ``asa.group_statistics``, ``asa.maps``, ``asa.mix``
or, fed into the neuron, ``asa.mix_and_neuron`` (the neuron's loop included), and the same with
``.backward``), which ``benchmarks/train_step.py --profile`` sums per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.profiler import record_function

from asa_snn.models.first_order import FirstOrderDynamics, integrate, integrate_backward

Select = Callable[[Tensor, Tensor], Tensor]
"""(F_avg, F_max), each [T, B, C] -> the important-group mask M1 [T, B, C]. F_avg comes in at least
float32 (the mean of a half-precision X is not rounded back), F_max in X's dtype (exact)."""

Maps = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
"""(mean1, max1, mean2, max2), each [B, H, W] -> the maps (A1, A2), each [B, H, W]."""


def _channels_last(x: Tensor) -> Tensor:
    """[T, B, C, H, W] -> the view [T, B, H, W, C]: contiguous for channels-last frames."""
    return x.permute(0, 1, 3, 4, 2)


Chunk = int | slice
"""Which steps one pass of a loop covers: an index t (one step's [B, H, W, C] view) or a slice of
steps (a [t, B, H, W, C] view); every helper below takes either."""


def step_chunks(steps: int, device: torch.device, whole: bool | None = None) -> list[Chunk]:
    """The chunks the loops of :func:`spatial_attention_passes` run over for ``steps`` time steps.

    ``whole`` None picks by device: one step at a time on the CPU (its temporaries stay in cache),
    all steps at once elsewhere (a GPU pays per kernel launch, not per byte of temporaries).
    """
    if whole is None:
        whole = device.type != "cpu"
    return [slice(0, steps)] if whole else list(range(steps))


def _planes(values: Tensor) -> Tensor:
    """[..., B, C] -> [..., B, 1, 1, C], to broadcast over a chunk's [..., B, H, W, C] view."""
    return values[..., None, None, :]


def _rows(values: Tensor) -> Tensor:
    """[B, H, W] -> [B, H, W, 1], to broadcast over the channels (and steps) of a chunk's view."""
    return values[..., None]


def _steps_and_channels(part: Tensor) -> tuple[int, ...]:
    """The dimensions of a chunk's view [..., B, H, W, C] that a per-pixel statistic reduces."""
    return (*range(part.dim() - 4), part.dim() - 1)


def _weighted_pixel_sums(weights: Tensor, x: Tensor) -> Tensor:
    """sum_{h,w} weights[b, h, w] * X[..., b, h, w, c], [..., B, C], for weights [B, H, W] and a
    chunk's view X [..., B, H, W, C] (a copy only for frames not channels-last)."""
    pixels = x.reshape(*x.shape[:-3], -1, x.shape[-1])
    return torch.matmul(weights.reshape(weights.shape[0], 1, -1), pixels)[..., 0, :]


def autocast_off(device: torch.device) -> AbstractContextManager:
    """A region without autocast on ``device`` (nothing to switch off where it has none).

    Inside ``torch.compile`` the availability check is not traced (it would break the graph);
    compilation happens only for CUDA and the CPU, which both have autocast.
    """
    if torch.compiler.is_compiling() or torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


@dataclass
class _Attended:
    """What the passes up to the maps computed (saved between forward and backward).

    ``view`` is X as [T, B, H, W, C]; ``mask`` and ``complement`` are M1 and 1 - M1 [T, B, C];
    ``a2`` and ``difference`` = A1 - A2 are [B, H, W]; ``maxima`` are each step's maxima of the two
    groups [T, 2, B, H, W] and ``peak`` their max over the steps [2, B, H, W]; ``graphs`` are the
    small autograd graphs (pooled statistics -> mask, group statistics -> maps) and the learnable
    parameters.
    """

    view: Tensor
    chunks: list[Chunk]
    mask: Tensor
    complement: Tensor
    f_max: Tensor
    a2: Tensor
    difference: Tensor
    maxima: Tensor
    peak: Tensor
    graphs: tuple
    scale: list[float]


def _attend(
    x: Tensor,
    lam: float,
    select: Select,
    maps: Maps,
    whole: bool | None,
    parameters: Sequence[Tensor],
    build: bool,
) -> _Attended:
    """The passes before the mix: channel statistics, selection, group statistics and maps."""
    graph = torch.enable_grad() if build else nullcontext()
    with record_function("asa.channel_statistics"):
        f_avg = x.mean(dim=(3, 4), dtype=torch.promote_types(x.dtype, torch.float32))
        f_max = x.amax(dim=(3, 4))
    with record_function("asa.select"), graph:
        pooled = [f.detach().requires_grad_(build) for f in (f_avg, f_max)]
        mask_graph = select(*pooled)
    mask = mask_graph.detach().to(x.dtype).contiguous()
    complement = 1.0 - mask
    view = _channels_last(x)
    chunks = step_chunks(x.shape[0], x.device, whole)
    with record_function("asa.group_statistics"):
        stats, maxima, peak = _group_statistics(view, chunks, (mask, complement), lam)
    with record_function("asa.maps"), graph:
        stat_leaves = [s.detach().requires_grad_(build) for s in stats]
        map1, map2 = maps(*stat_leaves)
    a2 = map2.detach()
    graphs = (pooled, mask_graph, stat_leaves, (map1, map2), tuple(parameters))
    scale = [1.0 / (x.shape[0] * x.shape[2]) / d for d in (lam, 1.0 - lam)]
    difference = map1.detach() - a2
    return _Attended(view, chunks, mask, complement, f_max, a2, difference, maxima, peak, graphs, scale)


def _mix_into(att: _Attended, t: Chunk, out: Tensor) -> Tensor:
    """Y[t] = X[t] (A2 + M1[t] (A1 - A2)) into ``out``, a chunk's [..., B, H, W, C] view."""
    torch.mul(att.view[t], _planes(att.mask[t]), out=out).mul_(_rows(att.difference))
    return out.addcmul_(att.view[t], _rows(att.a2))


def _mix_backward_step(
    att: _Attended, t: Chunk, grad_y: Tensor, into: tuple[Tensor, Tensor], sums: tuple[Tensor, Tensor, Tensor]
) -> None:
    """Through Y[t] = X[t] (A2 + M1[t] (A1 - A2)) for a chunk's gradient ``grad_y`` [..., B, H, W, C]:
    write dY/dX into ``into[0]`` (the input gradient's [T, B, H, W, C] view) and dY/dM1 into
    ``into[1]`` ([T, B, C]); add sum(dY M1 X) and sum(dY X) over (steps, C) to ``sums[0]`` and
    ``sums[1]`` ([B, H, W]); ``sums[2]`` is a scratch buffer of the chunk's shape."""
    grad_view, grad_mask = into
    grad_a1, grad_total, weighted = sums
    mask_t = _planes(att.mask[t])
    torch.mul(grad_y, mask_t, out=grad_view[t]).mul_(_rows(att.difference)).addcmul_(grad_y, _rows(att.a2))
    torch.mul(grad_y, att.view[t], out=weighted)
    over = _steps_and_channels(weighted)
    grad_total += weighted.sum(over, dtype=grad_total.dtype)
    grad_mask[t] = _weighted_pixel_sums(att.difference, weighted)
    grad_a1 += weighted.mul_(mask_t).sum(over, dtype=grad_a1.dtype)


def _mix_sums(att: _Attended) -> tuple[Tensor, Tensor, Tensor]:
    """Zeroed accumulators of sum(dY M1 X), sum(dY X) ([B, H, W], at least float32) and a scratch
    buffer of one chunk, for :func:`_mix_backward_step`."""
    accumulate = torch.promote_types(att.view.dtype, torch.float32)
    zeros = [torch.zeros_like(att.a2, dtype=accumulate) for _ in range(2)]
    return zeros[0], zeros[1], torch.empty_like(att.view[att.chunks[0]])


def _backward_after_mix(
    att: _Attended, sums: tuple[Tensor, Tensor, Tensor], into: tuple[Tensor, Tensor]
) -> list[Tensor | None]:
    """Everything behind the mix, once dY/dX and dY/dM1 are in ``into`` and the map sums in
    ``sums``: maps, group statistics, selection and channel statistics add their gradients to
    ``into``; returns the gradients of the learnable parameters (None where unused)."""
    pooled, mask_graph, stat_leaves, map_graphs, parameters = att.graphs
    learnable = [p for p in parameters if p.requires_grad]
    grad_view, grad_mask = into
    grad_a1 = sums[0].to(att.a2.dtype)
    grad_maps = (grad_a1, (sums[1] - sums[0]).to(att.a2.dtype))
    with record_function("asa.maps.backward"):
        from_maps = _graph_grad(map_graphs, stat_leaves + learnable, grad_maps)
    grad_stats = [
        torch.zeros_like(leaf) if g is None else g for g, leaf in zip(from_maps[:4], stat_leaves, strict=True)
    ]
    grad_means = (grad_stats[0] * att.scale[0], grad_stats[2] * att.scale[1])
    grad_peaks = (grad_stats[1], grad_stats[3])
    with record_function("asa.group_statistics.backward"):
        _group_backward(att, (grad_peaks, grad_means), into)
    with record_function("asa.select.backward"):
        from_mask = _graph_grad((mask_graph,), pooled + learnable, (grad_mask,))
    with record_function("asa.channel_statistics.backward"):
        _spread_backward(att, grad_means, from_mask[:2], grad_view)
    grad_parameters = iter(_add(a, b) for a, b in zip(from_maps[4:], from_mask[2:], strict=True))
    return [next(grad_parameters) if p.requires_grad else None for p in parameters]


class _SpatialAttentionPasses(torch.autograd.Function):
    """Y = A1 (X M1) + A2 (X (1 - M1)) with M1 and the maps computed from X; see
    :func:`spatial_attention_passes`.

    Every loop works on one step's [B, H, W, C] view (contiguous for channels-last frames) and
    keeps a full-size tensor as the first operand of each elementwise operation, uses 0/1 floats
    rather than bool tensors, and batched matrix products for sums over (H, W): on CPU these
    run several times faster than the broadcast-only, bool or einsum forms.
    """

    @staticmethod
    def forward(ctx, x, lam: float, select: Select, maps: Maps, whole: bool | None, *parameters):
        build = any(ctx.needs_input_grad)
        att = _attend(x, lam, select, maps, whole, parameters, build)
        with record_function("asa.mix"):
            y = torch.empty_like(x)
            y_view = _channels_last(y)
            for t in att.chunks:
                _mix_into(att, t, y_view[t])
        if build:
            ctx.save_for_backward(x)
            ctx.att = att
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        att: _Attended = ctx.att
        grad_x = torch.empty_like(x)
        into = (_channels_last(grad_x), torch.empty_like(att.mask))
        sums = _mix_sums(att)
        grad_view_y = _channels_last(grad_y)
        with record_function("asa.mix.backward"):
            for t in att.chunks:
                _mix_backward_step(att, t, grad_view_y[t], into, sums)
        grads = _backward_after_mix(att, sums, into)
        return (grad_x if ctx.needs_input_grad[0] else None), None, None, None, None, *grads


class _SpatialAttentionThenNeuron(torch.autograd.Function):
    """The same passes with the mix fed straight into a first-order neuron's loop
    (:func:`asa_snn.models.first_order.integrate`): each step's Y[t] lives in one [B, C, H, W]
    buffer, and in the backward pass each step's dL/dY[t] from the neuron's reverse loop goes
    through the mix at once, so neither Y nor dL/dY ever exists as a [T, B, C, H, W] tensor.
    Returns (spikes, membrane before reset), each [T, B, C, H, W]; values equal the attention
    followed by the neuron's fused loop exactly (the same operations in the same order).
    """

    @staticmethod
    def forward(ctx, x, lam, select, maps, dynamics: FirstOrderDynamics, leak, *parameters):
        build = any(ctx.needs_input_grad)
        att = _attend(x, lam, select, maps, False, parameters, build)
        membrane, spikes = torch.empty_like(x), torch.empty_like(x)
        step = torch.empty_like(x[0])
        step_view = step.permute(0, 2, 3, 1)

        def mixed(t: int) -> Tensor:
            _mix_into(att, t, step_view)
            return step

        with record_function("asa.mix_and_neuron"):
            integrate(mixed, leak, dynamics, membrane, spikes)
        ctx.mark_non_differentiable(membrane)
        ctx.set_materialize_grads(False)
        if build:
            ctx.save_for_backward(x, leak, membrane)
            ctx.att, ctx.dynamics = att, dynamics
        return spikes, membrane

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes, _grad_membrane):
        x, leak, membrane = ctx.saved_tensors
        att: _Attended = ctx.att
        grad_x = torch.empty_like(x)
        into = (_channels_last(grad_x), torch.empty_like(att.mask))
        sums = _mix_sums(att)
        buffers = [torch.empty_like(membrane[0]) for _ in range(2)]

        def through_mix(t: int, grad_y: Tensor) -> None:
            _mix_backward_step(att, t, grad_y.permute(0, 2, 3, 1), into, sums)

        with record_function("asa.mix_and_neuron.backward"):
            grad_leak = integrate_backward(
                membrane,
                grad_spikes,
                leak,
                ctx.dynamics,
                lambda t: buffers[t % 2],
                ctx.needs_input_grad[5],
                through_mix,
            )
        grads = _backward_after_mix(att, sums, into)
        grad_x = grad_x if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None, None, grad_leak, *grads


def _group_statistics(
    view: Tensor, chunks: list[Chunk], masks: tuple[Tensor, Tensor], lam: float
) -> tuple[list[Tensor], Tensor, Tensor]:
    """[mean1 / lam, max1, mean2 / (1 - lam), max2] over (T, C), each step's maxima [T, 2, B, H, W]
    and the two groups' maxima [2, B, H, W] (max1 and max2 stacked).

    ``view`` is X as [T, B, H, W, C]; ``masks`` are M1 and 1 - M1, [T, B, C]. Each statistic is
    [B, H, W]. Both groups go through each chunk together, as one [(steps,) 2, B, H, W, C]
    product, and each step's sums and maxima go into [T, 2, B, H, W] buffers, merged over steps
    at the end; the maxima buffer is returned (the backward pass finds the entries at each
    group's max from it, :func:`_peak_ties`).
    """
    accumulate = torch.promote_types(view.dtype, torch.float32)
    weights = torch.stack(masks, dim=1)
    per_step = (view.shape[0], 2, *view.shape[1:4])
    totals = view.new_empty(per_step, dtype=accumulate)
    maxima = view.new_empty(per_step)
    part = view.new_empty((*weights[chunks[0]].shape[:-2], *view.shape[1:]))
    with autocast_off(view.device):
        for t in chunks:
            torch.mul(view[t].unsqueeze(-5), _planes(weights[t]), out=part)
            torch.sum(part, -1, dtype=accumulate, out=totals[t])
            torch.amax(part, -1, out=maxima[t])
    peak, sums = maxima.amax(0), totals.sum(0)
    steps_channels = view.shape[0] * view.shape[4]
    means = [(sums[g] / steps_channels / d).to(view.dtype) for g, d in enumerate((lam, 1.0 - lam))]
    return [means[0], peak[0], means[1], peak[1]], maxima, peak


def _peak_ties(view: Tensor, weights: Tensor, maxima: Tensor, peak: Tensor) -> tuple[Tensor, Tensor]:
    """How many entries of each group equal its peak, and where: (ties, position), [2, B, H, W]
    each, position = t * C + c (exact where the peak is reached once).

    Only the steps whose max is the peak can hold it, so only their C entries are gathered and
    compared (about one step per pixel and group, instead of all T): ``view`` X [T, B, H, W, C],
    ``weights`` [T, 2, B, C], ``maxima`` each step's max [T, 2, B, H, W], ``peak`` [2, B, H, W].
    """
    accumulate = torch.promote_types(view.dtype, torch.float32)
    steps, batch, height, width, channels = view.shape
    step, flat = (maxima == peak).view(steps, -1).nonzero(as_tuple=True)
    group, sample = flat // (batch * height * width), flat // (height * width) % batch
    entries = view[step, sample, flat // width % height, flat % width]
    entries.mul_(weights[step, group, sample])
    hits = entries if entries.dtype == accumulate else torch.empty_like(entries, dtype=accumulate)
    torch.eq(entries, peak.view(-1)[flat, None], out=hits)
    channel_index = torch.arange(channels, dtype=accumulate, device=view.device)
    counted = torch.stack((hits.sum(-1), torch.matmul(hits, channel_index).add_(step * channels)), dim=1)
    found = torch.zeros((peak.numel(), 2), dtype=accumulate, device=view.device).index_add_(0, flat, counted)
    return found[:, 0].view(peak.shape), found[:, 1].view(peak.shape)


def _group_backward(
    att: _Attended, grads: tuple[Sequence[Tensor], Sequence[Tensor]], into: tuple[Tensor, Tensor]
) -> None:
    """Through the group statistics, what reaches the mask: add it to ``into[1]``, and the maxima's
    share of the input gradient to ``into[0]`` (the means' share of it is added later, with the
    channel statistics', by :func:`_spread_backward`).

    ``grads`` holds the gradients of the two groups' maxima and of their means, [B, H, W] each.
    M1 gets sum_{h,w} (dmean1 - dmean2) X; the entries equal to a group's max at their pixel
    share the max's gradient (:func:`_add_at_peaks`, or :func:`_add_at_peaks_densely` where the
    loops run over all steps at once).
    """
    grad_peaks, grad_means = grads
    view, masks = att.view, (att.mask, att.complement)
    into[1].add_(_weighted_pixel_sums(grad_means[0] - grad_means[1], view))
    signs = (1.0, -1.0)
    if isinstance(att.chunks[0], int):
        with autocast_off(view.device):
            ties, position = _peak_ties(view, torch.stack(masks, dim=1), att.maxima, att.peak)
        for g in range(2):
            found = (att.peak[g], ties[g], position[g])
            _add_at_peaks(view, (masks[g], signs[g]), found, grad_peaks[g], into)
    else:
        for g in range(2):
            _add_at_peaks_densely(view, att.chunks, (masks[g], signs[g]), att.peak[g], grad_peaks[g], into)


def _add_at_peaks(
    view: Tensor,
    group: tuple[Tensor, float],
    found: tuple[Tensor, Tensor, Tensor],
    grad: Tensor,
    into: tuple[Tensor, Tensor],
) -> None:
    """Share the max's gradient ``grad`` [B, H, W] among the entries equal to the max, per pixel.

    The group's entries are X M1 (sign 1) or X (1 - M1) (sign -1), ``group`` = its [T, B, C]
    weights and sign; ``found`` = its max, the number of entries equal to it and where the max
    is, [B, H, W] each (:func:`_peak_ties`). An entry at the max gets ``grad / ties`` times its
    weight in the input gradient (``into[0]``, a [T, B, H, W, C] view) and times sign X in the mask
    gradient (``into[1]``). A pixel whose max is reached once is served by index; a pixel with
    ties has its T x C entries gathered and compared with the max.
    """
    weights, sign = group
    peak, ties, where = found
    grad_view, grad_mask = into
    once = ties == 1
    b, h, w = once.nonzero(as_tuple=True)
    position = where[once].long()
    step, channel = position // view.shape[4], position % view.shape[4]
    share = grad[once]
    at_peak = (step, b, h, w, channel)
    grad_view.index_put_(at_peak, (weights[step, b, channel] * share).to(grad_view.dtype), accumulate=True)
    on_mask = (sign * view[at_peak] * share).to(grad_mask.dtype)
    grad_mask.index_put_((step, b, channel), on_mask, accumulate=True)
    tied = ~once
    if not bool(tied.any()):
        return
    b, h, w = tied.nonzero(as_tuple=True)
    pixels = view.permute(1, 2, 3, 0, 4)[b, h, w]
    pixel_weights = weights.transpose(0, 1)[b]
    hits = torch.eq(pixels * pixel_weights, peak[b, h, w][:, None, None])
    share = torch.where(hits, (grad[b, h, w] / ties[b, h, w])[:, None, None].to(view.dtype), 0.0)
    grad_view.permute(1, 2, 3, 0, 4).index_put_((b, h, w), share * pixel_weights, accumulate=True)
    grad_mask.transpose(0, 1).index_add_(0, b, (sign * share * pixels).to(grad_mask.dtype))


def _add_at_peaks_densely(
    view: Tensor,
    chunks: list[Chunk],
    group: tuple[Tensor, float],
    peak: Tensor,
    grad: Tensor,
    into: tuple[Tensor, Tensor],
) -> None:
    """What :func:`_add_at_peaks` adds, as dense passes over chunks of steps: the entries of the
    group (``group`` = its [T, B, C] weights and sign) equal to their pixel's max ``peak``
    [B, H, W] are counted, then each gets ``grad / ties``. No index lists, so no host
    synchronisation: the form for a GPU."""
    weights, sign = group
    grad_view, grad_mask = into
    accumulate = torch.promote_types(view.dtype, torch.float32)
    part = torch.empty_like(view[chunks[0]])
    ties = torch.zeros_like(peak, dtype=accumulate)
    for t in chunks:
        hits = torch.mul(view[t], _planes(weights[t]), out=part) == _rows(peak)
        ties += hits.sum(_steps_and_channels(part), dtype=accumulate)
    share = _rows((grad / ties).to(view.dtype))
    for t in chunks:
        torch.mul(view[t], _planes(weights[t]), out=part)
        shared = torch.where(part == _rows(peak), share, 0.0)
        grad_view[t].addcmul_(shared, _planes(weights[t]))
        on_mask = (sign * shared * view[t]).sum(dim=(-3, -2), dtype=accumulate)
        grad_mask[t] += on_mask.to(grad_mask.dtype)


def _spread_backward(
    att: _Attended, grad_means: Sequence[Tensor], grad_pooled: Sequence[Tensor | None], grad_view: Tensor
) -> None:
    """Add to ``grad_view`` (dL/dX as [T, B, H, W, C]) what the means and maxima spread over X,
    in one pass per chunk of steps: the groups' means (``grad_means``, [B, H, W] each: every
    entry of group g gets dmean_g times its weight) and F_avg = mean_{h,w} X, F_max = max_{h,w} X
    (``grad_pooled``, [T, B, C] each or None; F_max's gradient is shared by the entries equal to
    it)."""
    grad_avg, grad_max = grad_pooled
    view, mask = att.view, att.mask
    split = _rows(grad_means[0] - grad_means[1])
    per_channel = None if grad_avg is None else grad_avg / (view.shape[2] * view.shape[3])
    ties = None if grad_max is None else torch.empty_like(view[att.chunks[0]])
    for t in att.chunks:
        step = grad_view[t].add_(_rows(grad_means[1])).addcmul_(_planes(mask[t]), split)
        if per_channel is not None:
            step.add_(_planes(per_channel[t]))
        if grad_max is not None:
            torch.eq(view[t], _planes(att.f_max[t]), out=ties)
            step.addcmul_(ties, _planes(grad_max[t] / ties.sum(dim=(-3, -2))))


def _graph_grad(
    outputs: Sequence[Tensor], inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> list[Tensor | None]:
    """Gradients of ``inputs`` through the graph recorded in the forward pass (None where unused)."""
    kept = [(o, g) for o, g in zip(outputs, grads, strict=True) if o.requires_grad]
    if not kept:
        return [None] * len(inputs)
    found = torch.autograd.grad(
        [o for o, _ in kept],
        list(inputs),
        [g.to(o.dtype) for o, g in kept],
        allow_unused=True,
        retain_graph=True,
    )
    return list(found)


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def spatial_attention_passes(
    x: Tensor,
    lam: float,
    select: Select,
    maps: Maps,
    parameters: Sequence[Tensor] = (),
    whole_steps: bool | None = None,
) -> Tensor:
    """ASA's three passes over X [T, B, C, H, W] as one autograd Function.

        F_avg, F_max = mean, max over (H, W) of X                       [T, B, C]
        M1 = select(F_avg, F_max)                                         [T, B, C]
        mean_g, max_g over (T, C) of X M1 (g = 1) and X (1 - M1) (g = 2)  [B, H, W]
        A1, A2 = maps(mean_1 / lam, max_1, mean_2 / (1 - lam), max_2)     [B, H, W]
        Y = A1 (X M1) + A2 (X (1 - M1))                                   [T, B, C, H, W]

    ``select`` and ``maps`` are ordinary differentiable PyTorch code on the small tensors;
    ``parameters`` are every tensor they read that may need a gradient (a module's parameters):
    their gradients are returned through this Function. ``whole_steps``: run every loop over all
    steps at once (True) or one step at a time (False); None picks by device (:func:`step_chunks`).
    Returns Y in X's memory format.
    """
    return _SpatialAttentionPasses.apply(x, lam, select, maps, whole_steps, *parameters)


def spatial_attention_then_neuron(
    x: Tensor,
    lam: float,
    select: Select,
    maps: Maps,
    neuron: tuple[Tensor, FirstOrderDynamics],
    parameters: Sequence[Tensor] = (),
) -> Tensor:
    """Spikes [T, B, C, H, W] of a first-order neuron (``neuron`` = its 0-dim leak and its
    dynamics, :func:`asa_snn.models.first_order.integrate`) driven by the Y of
    :func:`spatial_attention_passes` on X [T, B, C, H, W], one time step at a time, without Y or
    its gradient as whole tensors. Equal, spike for spike, to the neuron's fused loop on
    ``spatial_attention_passes(x, ...)``; gradients to rounding (tested)."""
    leak, dynamics = neuron
    spikes, _membrane = _SpatialAttentionThenNeuron.apply(x, lam, select, maps, dynamics, leak, *parameters)
    return spikes
