"""Advanced Spatial Attention, ASA-1 and ASA-2 (paper section 4), and the released code's behaviour.

Layout: X is [T, B, C, H, W] (T time steps first); masks and importance are computed per sample
and kept as [B, T, C]. Notation follows the paper: F_avg, F_max, F_add, importance I, masks
M1 / M2, maps A1 / A2, separation ratio lambda.
"""

from __future__ import annotations

import importlib.util
import weakref
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asa_snn.errors import AsaSnnError
from asa_snn.models.attention.spatial import SpatialMap, check_input, check_reduction, mean_max_map
from asa_snn.models.attention.stepwise import (
    autocast_off,
    spatial_attention_passes,
    spatial_attention_then_neuron,
    step_chunks,
)
from asa_snn.models.recording import SpikingNeuron

TopK = Callable[[Tensor, int, int], Tensor]
"""(scores, k, dim) -> 0/1 mask of the k largest scores along dim, same shape as scores."""

_MIN_SPREAD = 1e-6
"""Floor of the score spread that scales the relaxed mask, so constant scores give finite slopes."""


def hard_topk_mask(scores: Tensor, k: int, dim: int) -> Tensor:
    """0/1 mask (float, same shape as ``scores``) of the k largest entries along ``dim``.

    Ties are broken by ``torch.topk`` (deterministically). No gradient flows through it. The
    indices are taken unsorted: the mask needs no order, and on the CPU sorting them costs up to
    10x the selection itself ([8, 16, 128] scores).
    """
    index = scores.detach().topk(k, dim=dim, sorted=False).indices
    return torch.zeros_like(scores, requires_grad=False).scatter_(dim, index, 1.0)


def straight_through_topk_mask(scores: Tensor, k: int, dim: int, temperature: float) -> Tensor:
    """Hard top-k mask in the forward pass, gradient of a sigmoid relaxation in the backward pass.

        S = sigmoid( (I - theta) / (tau * s) ),   M = M_hard + S - stopgrad(S)

    where theta is the midpoint between the k-th and (k+1)-th largest score along ``dim`` (the
    smallest selected and the largest unselected score) and s the standard deviation of the
    scores along ``dim`` (n - 1 in the denominator; both held constant, s floored at 1e-6),
    tau = ``temperature``. The forward value equals :func:`hard_topk_mask` exactly;
    dM/dI = S (1 - S) / (tau * s), largest for scores near the selection boundary.
    Needs k + 1 <= size along ``dim``.
    """
    fixed = scores.detach()
    hard = hard_topk_mask(fixed, k, dim)
    selected = hard.bool()
    kth = fixed.masked_fill(~selected, float("inf")).amin(dim=dim, keepdim=True)
    next_largest = fixed.masked_fill(selected, float("-inf")).amax(dim=dim, keepdim=True)
    threshold = 0.5 * (kth + next_largest)
    centred = fixed - fixed.mean(dim=dim, keepdim=True)
    variance = centred.square().sum(dim=dim, keepdim=True) / (fixed.shape[dim] - 1)
    spread = variance.sqrt().clamp_min(_MIN_SPREAD)
    soft = torch.sigmoid((scores - threshold) / (temperature * spread))
    return hard + (soft - soft.detach())


def exclusive_or(a: Tensor, b: Tensor) -> Tensor:
    """a XOR b for 0/1 tensors, written a + b - 2ab so gradients pass to both."""
    return a + b - 2.0 * a * b


def selection_size(module: str, field: str, size: int, lam: float) -> int:
    """k = floor(lambda * size), the number of entries top-k keeps; at least 1 or AsaSnnError."""
    k = int(lam * size)
    if k < 1:
        raise AsaSnnError(
            f"{module}: lambda={lam} keeps floor(lambda * {field}) = 0 of {field}={size}, "
            f"expected {field} >= {1.0 / lam:g} so at least one entry is selected"
        )
    return k


def separation_masks(importance: Tensor, lam: float, topk: TopK = hard_topk_mask) -> tuple[Tensor, Tensor]:
    """Per-sample separation policy: the important mask M1 and its complement M2.

        mask_c[b, t, :] = top-k_c of I[b, t, :] over channels,  k_c = floor(lambda C)
        mask_t[b, :, c] = top-k_t of I[b, :, c] over steps,     k_t = floor(lambda T)
        M1 = mask_c XOR mask_t,   M2 = 1 - M1

    An entry is important when exactly one of the two selections picks it (the released code's
    rule; the paper's pseudo-code was lost in extraction, FACTS.md section 2).

    Args:
        importance: I, shape [B, T, C].
        lam: separation ratio lambda in (0, 1).
        topk: top-k mask function (hard, or straight-through for training).

    Returns:
        (M1, M2), each [B, T, C] of 0 / 1 values.
    """
    _, T, C = importance.shape
    mask_c = topk(importance, int(lam * C), 2)
    mask_t = topk(importance, int(lam * T), 1)
    important = exclusive_or(mask_c, mask_t)
    return important, 1.0 - important


def batch_union_masks(importance: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """The released code's separation: top-k masks united over the whole batch, no gradient.

        mask_c[t, c] = 1 if c is among the top-k_c channels at step t for ANY sample
        mask_t[t, c] = 1 if t is among the top-k_t steps of channel c for ANY sample
        M1 = mask_c XOR mask_t (same for every sample),  M2 = 1 - M1

    So a sample's masks depend on its batch mates. Shapes as :func:`separation_masks`.
    """
    fixed = importance.detach()
    _, T, C = fixed.shape
    mask_c = hard_topk_mask(fixed, int(lam * C), 2).amax(dim=0, keepdim=True)
    mask_t = hard_topk_mask(fixed, int(lam * T), 1).amax(dim=0, keepdim=True)
    important = exclusive_or(mask_c, mask_t).expand_as(fixed)
    return important, 1.0 - important


class StraightThroughSelector:
    """Per-sample hard masks (:func:`separation_masks`) with straight-through sigmoid gradients.

    Gradients reach F_add's alpha, beta and ASA-1's FC through
    :func:`straight_through_topk_mask` (temperature tau, default 1: the relaxation's width in
    units of the scores' standard deviation).
    """

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise AsaSnnError(f"StraightThroughSelector: temperature={temperature}, expected > 0")
        self.temperature = temperature

    def __call__(self, importance: Tensor, lam: float) -> tuple[Tensor, Tensor]:
        """Return (M1, M2), each [B, T, C], for importance [B, T, C]."""
        return separation_masks(
            importance, lam, partial(straight_through_topk_mask, temperature=self.temperature)
        )


class BatchUnionSelector:
    """The released code's selector (:func:`batch_union_masks`): batch-union masks, no gradient."""

    def __call__(self, importance: Tensor, lam: float) -> tuple[Tensor, Tensor]:
        """Return (M1, M2), each [B, T, C], identical for every sample."""
        return batch_union_masks(importance, lam)


Selector = StraightThroughSelector | BatchUnionSelector

BACKENDS = ("auto", "stepwise", "reference", "compiled")
"""How :class:`AdvancedSpatialAttention` computes its passes over X (see its ``backend``)."""


def auto_backend(device: torch.device) -> str:
    """The backend ``"auto"`` runs on ``device``: ``"compiled"`` on CUDA where Triton (which
    ``torch.compile`` needs there) imports, else ``"stepwise"``.

    Measured on one H200 (benchmarks/README.md, "GPU mode"): the compiled passes cost 1.11x the
    step without attention at T = 60 against 1.43x for the stepwise ones; on the CPU the
    stepwise passes are the fastest (their per-step temporaries stay in cache).
    """
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        return "compiled"
    return "stepwise"


_COMPILED: weakref.WeakKeyDictionary[nn.Module, Callable[[Tensor], Tensor]] = weakref.WeakKeyDictionary()
"""The ``torch.compile`` of each module's reference passes, made on its first ``compiled`` call
(kept outside the module, so copying or saving a module never meets a compiled function)."""


class PooledImportance(nn.Module):
    """ASA-2's importance: I = F_add directly (no parameters).

    Shape: F_add [B, T, C] -> I [B, T, C].
    """

    def forward(self, f_add: Tensor) -> Tensor:
        """Return I = F_add."""
        return f_add

    def extra_macs(self, T: int, C: int) -> int:
        """No multiplications."""
        return 0


class TemporalFcImportance(nn.Module):
    """ASA-1's learnable importance, a bias-free two-layer FC over the time axis shared by channels.

        I[b, :, c] = W2 ReLU( W1 F_add[b, :, c] ),   W1: T -> T/r,  W2: T/r -> T

    2 T floor(T/r) parameters: 3600 for T = 60, r = 2 (the count Table 3 implies); the released
    recipes used r = 4 (1800). The paper's Eq. 8-9 apply a sigmoid to I and the released code does
    not; a sigmoid is monotone, so the top-k masks are the same and it is left out here.

    Args:
        timesteps: T.
        reduction: r, an integer with T // r >= 1.

    Shape: F_add [B, T, C] -> I [B, T, C].
    """

    def __init__(self, timesteps: int, reduction: int = 2) -> None:
        super().__init__()
        hidden = check_reduction("TemporalFcImportance(asa1)", "timesteps", timesteps, reduction)
        self.hidden = hidden
        self.fc = nn.Sequential(
            nn.Linear(timesteps, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, timesteps, bias=False),
        )

    def forward(self, f_add: Tensor) -> Tensor:
        """Apply the FC to each (sample, channel) series of T values, in F_add's dtype (the weights
        are cast to it, so a half-precision model still scores in float32)."""
        series = f_add.transpose(1, 2)
        hidden = F.relu(F.linear(series, self.fc[0].weight.to(series.dtype)))
        return F.linear(hidden, self.fc[2].weight.to(series.dtype)).transpose(1, 2)

    def extra_macs(self, T: int, C: int) -> int:
        """Two FC layers per channel: C * 2 * T * floor(T / r)."""
        return C * 2 * T * self.hidden


class AdvancedSpatialAttention(nn.Module):
    """ASA: separate the features into two complementary groups, then one spatial map per group.

    For input current X [T, B, C, H, W] (after batch norm, before the spiking neuron), per sample b:

        F_avg[t, c] = mean_{h,w} X[t, c],     F_max[t, c] = max_{h,w} X[t, c]
        F_add = (0.5 + alpha) F_avg + (0.5 + beta) F_max          (alpha = beta = 0.5 at init)
        I = F_add (ASA-2)   or   I = W2 ReLU(W1 F_add) over t (ASA-1)
        M1, M2 = separation policy of I with ratio lambda           (see separation_masks)
        A1 = sigmoid(f^{3x3}([ mean_{t,c}(X M1) / lambda ; max_{t,c}(X M1) ]))
        A2 = sigmoid(f^{3x3}([ mean_{t,c}(X M2) / (1 - lambda) ; max_{t,c}(X M2) ]))
        Y = A1 * (X M1) + A2 * (X M2)

    Masks broadcast over H, W; maps A_g [B, 1, H, W] broadcast over T and C; masked-out entries
    enter the max as 0. The mean divisor of M2 is 1 - lambda, as in the released code (equal to
    lambda at the default 0.5). The parameter count is 2 (alpha, beta) + 2 * 18 (two 3x3 convs)
    + the importance FC: 38 for ASA-2, 3638 for ASA-1 with T = 60, r = 2 (FACTS.md section 1).

    Args:
        channels: C.
        timesteps: T (steps).
        importance: :class:`PooledImportance` (ASA-2) or :class:`TemporalFcImportance` (ASA-1).
        selector: :class:`StraightThroughSelector` (per-sample masks, trainable selector) or
            :class:`BatchUnionSelector` (the released code's behaviour).
        lam: lambda in (0, 1).
        name: kind shown in error messages.
        backend: ``"auto"`` (default) picks by X's device (:func:`auto_backend`: ``"compiled"``
            on CUDA, ``"stepwise"`` elsewhere). ``"stepwise"`` computes the passes over X as one
            autograd Function with a hand-written backward, one time step at a time on the CPU
            and all steps at once elsewhere (:mod:`asa_snn.models.attention.stepwise`);
            ``"reference"`` writes the equations above as whole-tensor PyTorch operations, the
            definition the other backends are tested against; ``"compiled"`` is the reference
            through ``torch.compile`` with static shapes (a few fused kernels instead of many
            small ones: the choice on a GPU, where the host's kernel launches are what ASA costs;
            each new input shape compiles once, which needs Triton on CUDA or a C++ compiler on
            the CPU). Same values and gradients, to rounding.

    Shape:
        [T, B, C, H, W] -> [T, B, C, H, W].
    """

    def __init__(
        self,
        channels: int,
        timesteps: int,
        importance: nn.Module,
        selector: Selector,
        lam: float = 0.5,
        name: str = "asa",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.label = f"AdvancedSpatialAttention({name})"
        if not 0.0 < lam < 1.0:
            raise AsaSnnError(f"{self.label}: lambda={lam}, expected a value strictly between 0 and 1")
        if backend not in BACKENDS:
            raise AsaSnnError(f"{self.label}: backend={backend!r}, expected one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.whole_steps: bool | None = None
        """The stepwise backend's loops: over all steps at once (True), one step at a time
        (False), or picked by device (None: :func:`asa_snn.models.attention.stepwise.step_chunks`)."""
        selection_size(self.label, "channels", channels, lam)
        selection_size(self.label, "timesteps", timesteps, lam)
        self.channels = channels
        self.timesteps = timesteps
        self.lam = lam
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.beta = nn.Parameter(torch.tensor(0.5))
        self.importance = importance
        self.selector = selector
        self.important_map = SpatialMap(3)
        self.subimportant_map = SpatialMap(3)

    def importance_scores(self, x: Tensor) -> Tensor:
        """I, shape [B, T, C], for X [T, B, C, H, W] (float32 or wider: see :meth:`_importance`)."""
        f_avg = x.mean(dim=(3, 4), dtype=torch.promote_types(x.dtype, torch.float32))
        return self._importance(f_avg, x.amax(dim=(3, 4)))

    def _importance(self, f_avg: Tensor, f_max: Tensor) -> Tensor:
        """I [B, T, C] from F_avg, F_max [T, B, C], computed in at least float32 with autocast off.

        The top-k selection compares scores; in bfloat16 or float16 (an autocast region, a half
        model) near-equal scores round to ties and the selection changes, so the scores never
        drop below float32.
        """
        dtype = torch.promote_types(f_avg.dtype, torch.float32)
        with autocast_off(f_avg.device):
            f_avg, f_max = f_avg.transpose(0, 1).to(dtype), f_max.transpose(0, 1).to(dtype)
            f_add = (0.5 + self.alpha.to(dtype)) * f_avg + (0.5 + self.beta.to(dtype)) * f_max
            return self.importance(f_add)

    def masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(M1, M2), each [B, T, C] of 0 / 1, for X [T, B, C, H, W]."""
        check_input(x, self.label, self.channels, self.timesteps)
        return self.selector(self.importance_scores(x), self.lam)

    def _select(self, f_avg: Tensor, f_max: Tensor) -> Tensor:
        """M1 [T, B, C] from F_avg, F_max [T, B, C] (the stepwise backend's ``select``)."""
        important, _ = self.selector(self._importance(f_avg, f_max), self.lam)
        return important.transpose(0, 1)

    def _maps(self, mean1: Tensor, max1: Tensor, mean2: Tensor, max2: Tensor) -> tuple[Tensor, Tensor]:
        """A1, A2 [B, H, W] from the groups' statistics [B, H, W] (the stepwise backend's ``maps``)."""
        a1 = self.important_map(torch.stack([mean1, max1], dim=1))
        a2 = self.subimportant_map(torch.stack([mean2, max2], dim=1))
        return a1[:, 0], a2[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        """Return Y = A1 * (X M1) + A2 * (X M2), shape [T, B, C, H, W]."""
        check_input(x, self.label, self.channels, self.timesteps)
        backend = self._backend_for(x)
        if backend == "stepwise":
            return spatial_attention_passes(
                x, self.lam, self._select, self._maps, self._learnable(), whole_steps=self.whole_steps
            )
        if backend == "compiled":
            return self._compiled_passes(x)
        return self._reference_passes(x)

    def attend_and_fire(self, x: Tensor, neuron: nn.Module) -> Tensor | None:
        """``neuron(self(x))`` for X [T, B, C, H, W] with the mix fed straight into the neuron's loop
        (:func:`~asa_snn.models.attention.stepwise.spatial_attention_then_neuron`: neither Y nor its
        gradient is a whole tensor), the same spikes and gradients; None where that path does not
        apply: a backend other than stepwise, loops over all steps at once (a GPU), or a neuron
        that is not a first-order neuron on its fused loop (:meth:`SpikingNeuron.first_order_step`)."""
        check_input(x, self.label, self.channels, self.timesteps)
        one_step_at_a_time = isinstance(step_chunks(1, x.device, self.whole_steps)[0], int)
        if self._backend_for(x) != "stepwise" or not one_step_at_a_time:
            return None
        step = neuron.first_order_step(x) if isinstance(neuron, SpikingNeuron) else None
        if step is None:
            return None
        neuron.check_input(x)
        return spatial_attention_then_neuron(x, self.lam, self._select, self._maps, step, self._learnable())

    def _backend_for(self, x: Tensor) -> str:
        """The backend that runs on ``x``: ``self.backend``, with ``"auto"`` resolved by device."""
        return auto_backend(x.device) if self.backend == "auto" else self.backend

    def _learnable(self) -> list[Tensor]:
        """The parameters that need a gradient (what the stepwise Functions return gradients for)."""
        return [p for p in self.parameters() if p.requires_grad]

    def _compiled_passes(self, x: Tensor) -> Tensor:
        """The reference passes through ``torch.compile`` (compiled on the module's first call)."""
        if self in _COMPILED:
            return _COMPILED[self](x)
        compiled = torch.compile(self._reference_passes, dynamic=False)
        try:
            y = compiled(x)  # the input is checked, so what fails here is the compilation
        except Exception as error:
            first = (str(error).strip().splitlines() or [""])[0][:200]
            raise AsaSnnError(
                f"{self.label}: backend='compiled' could not compile on {x.device.type} "
                f"({type(error).__name__}: {first}); torch.compile needs Triton on CUDA or a C++ "
                "compiler on the CPU; use model.attention_options = {backend = 'stepwise'}"
            ) from error
        _COMPILED[self] = compiled
        return y

    def _reference_passes(self, x: Tensor) -> Tensor:
        """The equations of the class docstring as whole-tensor operations (X, Y [T, B, C, H, W])."""
        important, subimportant = self.selector(self.importance_scores(x), self.lam)
        important, subimportant = important.to(x.dtype), subimportant.to(x.dtype)
        x_important = x * important.transpose(0, 1)[..., None, None]
        x_subimportant = x * subimportant.transpose(0, 1)[..., None, None]
        a1 = self.important_map(mean_max_map(x_important, (0, 2), self.lam))
        a2 = self.subimportant_map(mean_max_map(x_subimportant, (0, 2), 1.0 - self.lam))
        return a1 * x_important + a2 * x_subimportant

    def extra_macs(self, T: int, C: int, H: int, W: int) -> int:
        """Multiply-accumulates added per sample (T steps; C, H, W of the attended layer).

        Counting rule (shared by every module here): one MAC per multiply-accumulate of a conv or FC
        and per element-wise multiplication of an activation tensor; pooling (the sums, maxes and
        normalizing divisions of means), sigmoid and ReLU are not counted, and multiplying by a 0/1
        mask is a selection, not a MAC. This rule reproduces the paper's +14.3M for MA-SNN's SA on
        the 3-layer net exactly (T = 60; 98 * H*W * T for the 7x7 convs plus T*C*H*W). Table 3's
        +2.6M for ASA is not reproduced by it (6.48M for ASA-2, 7.63M for ASA-1), nor by any rule
        that gives SA 14.3M: that needs the T*C*H*W re-weighting term, which for ASA's first layer
        alone is 3.93M (the argument is in :mod:`asa_snn.models.registry`).
        Here: the F_add weights 2*T*C, the importance FC, the two 3x3 convs 2 * 18*H*W (once per
        sample: the maps are shared by all steps) and one scaling of every entry by its group's
        map T*C*H*W.
        """
        maps = self.important_map.extra_macs(H, W) + self.subimportant_map.extra_macs(H, W)
        return 2 * T * C + self.importance.extra_macs(T, C) + maps + T * C * H * W


def asa1(
    channels: int,
    timesteps: int,
    reduction: int = 2,
    lam: float = 0.5,
    temperature: float = 1.0,
    backend: str = "auto",
) -> AdvancedSpatialAttention:
    """ASA-1: learnable temporal FC importance, per-sample masks, straight-through selector."""
    return AdvancedSpatialAttention(
        channels,
        timesteps,
        TemporalFcImportance(timesteps, reduction),
        StraightThroughSelector(temperature),
        lam,
        name="asa1",
        backend=backend,
    )


def asa2(
    channels: int, timesteps: int, lam: float = 0.5, temperature: float = 1.0, backend: str = "auto"
) -> AdvancedSpatialAttention:
    """ASA-2: I = F_add, per-sample masks, straight-through selector."""
    selector = StraightThroughSelector(temperature)
    return AdvancedSpatialAttention(
        channels, timesteps, PooledImportance(), selector, lam, name="asa2", backend=backend
    )


def asa_reference(
    channels: int,
    timesteps: int,
    reduction: int = 2,
    lam: float = 0.5,
    learned: bool = True,
    backend: str = "auto",
) -> AdvancedSpatialAttention:
    """The released code's ASA (github BICLab/ASA-SNN), for comparison only.

    Masks are the union over the whole batch (a sample's output depends on its batch mates),
    combined by exclusive or, and detached: no gradient reaches alpha, beta or the FC, only the
    two 3x3 convs learn. ``learned=True`` uses ASA-1's FC importance, ``False`` ASA-2's
    F_add. Unlike the released code, batch size 1 works.
    """
    importance = TemporalFcImportance(timesteps, reduction) if learned else PooledImportance()
    return AdvancedSpatialAttention(
        channels, timesteps, importance, BatchUnionSelector(), lam, name="asa_reference", backend=backend
    )
