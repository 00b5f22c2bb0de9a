"""The paper's 3-layer net (arch A, FACTS.md section 2) written once per framework for the benchmark.

Every builder returns a :class:`Net`: a module holding the parameters and a ``forward(x) -> scores``
with ``x`` [T, B, 2, 32, 32] (T time steps first) and scores [B, 11], the mean over time of the
last layer's spikes (or ReLU outputs). The layers are the same everywhere::

    conv3x3 2->64 + BN -> neuron
    conv3x3 64->128 + BN -> avgpool2 -> neuron
    conv3x3 128->128 + BN -> avgpool2 -> neuron -> dropout 0.1
    flatten 8192 -> FC 256 -> neuron -> dropout 0.1 -> FC 11 -> neuron -> dropout 0.1

The neuron: u[t] = h[t-1] + X[t], spike s[t] = 1[u[t] >= 0.3], kept h[t] = 0.3 u[t] (1 - s[t])
(hard reset to 0, then the decay; reset not detached), rectangular surrogate of width 0.5 and
height 2. Each peer is configured as close to that as its public API allows (see README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

THRESHOLD = 0.3
DECAY = 0.3
SURROGATE_WIDTH = 0.5
DROPOUT = 0.1
CLASSES = 11
TIMESTEPS = 16
"""T the asa-snn entries are built for (their attention checks it); the benchmark's workers set it."""


@dataclass
class Net:
    """A network under test: ``module`` owns the parameters, ``forward`` maps [T, B, C, H, W] to [B, K]."""

    module: nn.Module
    forward: Callable[[Tensor], Tensor]


def _per_frame_layers(activation: Callable[[], nn.Module]) -> list[nn.Module]:
    """The per-time-step layer list of arch A with ``activation`` as the neuron."""
    return [
        nn.Conv2d(2, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        activation(),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.BatchNorm2d(128),
        nn.AvgPool2d(2),
        activation(),
        nn.Conv2d(128, 128, 3, padding=1),
        nn.BatchNorm2d(128),
        nn.AvgPool2d(2),
        activation(),
        nn.Dropout(DROPOUT),
        nn.Flatten(),
        nn.Linear(128 * 8 * 8, 256),
        activation(),
        nn.Dropout(DROPOUT),
        nn.Linear(256, CLASSES),
        activation(),
        nn.Dropout(DROPOUT),
    ]


def asa_snn(
    attention: str,
    memory_format: torch.memory_format = torch.channels_last,
    fuse_bn_pool: bool = True,
    attention_backend: str = "stepwise",
    feed_neuron: bool = True,
) -> Net:
    """asa-snn's registry model ``arch_a`` with the given attention kind.

    ``memory_format``: the frame layout of its conv blocks (channels-last is asa-snn's default;
    contiguous shows what that choice gains). ``fuse_bn_pool=False`` puts a no-op forward hook on
    every batch norm, which makes a conv block run batch norm and pooling as two modules (a hooked
    module must see its own call), to show what the fused step gains. ``attention_backend``: ASA's
    ``"stepwise"`` (default) or whole-tensor ``"reference"`` computation. ``feed_neuron=False`` puts
    a no-op forward hook on every attention module, so ASA's mix no longer feeds the neuron's loop
    step by step (``ConvBlock``'s one-pass attention and neuron) and Y is a whole tensor again.
    """
    from asa_snn.models.blocks import ConvBlock
    from asa_snn.models.registry import ModelSpec, build_model

    model = build_model(ModelSpec("arch_a", attention, TIMESTEPS, (2, 32, 32), CLASSES))
    for block in model.modules():
        if isinstance(block, ConvBlock):
            block.memory_format = memory_format
            if not fuse_bn_pool and block.bn is not None:
                block.bn.register_forward_hook(lambda _module, _inputs, _output: None)
            if hasattr(block.attention, "backend"):
                block.attention.backend = attention_backend
            if not feed_neuron:
                block.attention.register_forward_hook(lambda _module, _inputs, _output: None)
    return Net(model, model)


def relu_batched(memory_format: torch.memory_format = torch.contiguous_format) -> Net:
    """ReLU in place of every neuron; every layer runs once on the T*B frames stacked together.

    ``memory_format``: the layout of the frames and conv weights (contiguous, or channels-last as
    asa-snn's conv blocks use).
    """
    stack = nn.Sequential(*_per_frame_layers(nn.ReLU)).to(memory_format=memory_format)

    def forward(x: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        frames = x.flatten(0, 1).contiguous(memory_format=memory_format)
        return stack(frames).unflatten(0, (steps, batch)).mean(0)

    return Net(stack, forward)


def relu_stepwise(memory_format: torch.memory_format = torch.contiguous_format) -> Net:
    """ReLU in place of every neuron; the whole net runs once per time step on B frames."""
    stack = nn.Sequential(*_per_frame_layers(nn.ReLU)).to(memory_format=memory_format)

    def forward(x: Tensor) -> Tensor:
        return torch.stack([stack(x_t.contiguous(memory_format=memory_format)) for x_t in x]).mean(0)

    return Net(stack, forward)


def spikingjelly(backend: str = "torch") -> Net:
    """SpikingJelly activation_based, multi-step mode, ``LIFNode`` with the ``backend`` loop
    (``"torch"``; on CUDA also ``"cupy"`` or ``"triton"``, where SpikingJelly has them; SpikingJelly
    2 has no such argument and selects its kernel by device, so only ``"torch"`` builds there).

    ``decay_input=False, v_reset=0``: H[t] = (1 - 1/tau) V[t-1] + X[t], V[t] = H[t] (1 - s[t]),
    so tau = 1 / (1 - 0.3) reproduces the decay 0.3 exactly; ``surrogate.Rect(alpha=2)`` is the
    box of height 2 on |H - 0.3| < 0.25; ``detach_reset=False``.
    """
    import inspect

    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    # SpikingJelly 2 dropped LIFNode's backend argument: it picks its CUDA kernel itself
    chooses_itself = "backend" not in inspect.signature(neuron.LIFNode.__init__).parameters
    if chooses_itself and backend != "torch":
        raise RuntimeError(
            f"this SpikingJelly has no backend={backend!r}: it selects its CUDA kernel itself, "
            "which the 'spikingjelly' entry measures"
        )
    options = {} if chooses_itself else {"backend": backend}

    def lif() -> nn.Module:
        return neuron.LIFNode(
            tau=1.0 / (1.0 - DECAY),
            decay_input=False,
            v_threshold=THRESHOLD,
            v_reset=0.0,
            surrogate_function=surrogate.Rect(alpha=1.0 / SURROGATE_WIDTH),
            detach_reset=False,
            step_mode="m",
            **options,
        )

    stack = nn.Sequential(
        layer.Conv2d(2, 64, 3, padding=1, step_mode="m"),
        layer.BatchNorm2d(64, step_mode="m"),
        lif(),
        layer.Conv2d(64, 128, 3, padding=1, step_mode="m"),
        layer.BatchNorm2d(128, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"),
        lif(),
        layer.Conv2d(128, 128, 3, padding=1, step_mode="m"),
        layer.BatchNorm2d(128, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"),
        lif(),
        nn.Dropout(DROPOUT),
        layer.Flatten(step_mode="m"),
        layer.Linear(128 * 8 * 8, 256, step_mode="m"),
        lif(),
        nn.Dropout(DROPOUT),
        layer.Linear(256, CLASSES, step_mode="m"),
        lif(),
        nn.Dropout(DROPOUT),
    )

    def forward(x: Tensor) -> Tensor:
        functional.reset_net(stack)
        return stack(x).mean(0)

    return Net(stack, forward)


class _BoxSpike(torch.autograd.Function):
    """Heaviside spike of ``u - threshold`` forward, box surrogate (height 2, width 0.5) backward."""

    @staticmethod
    def forward(ctx, shifted: Tensor) -> Tensor:
        ctx.save_for_backward(shifted)
        return (shifted >= 0).to(shifted.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (shifted,) = ctx.saved_tensors
        return grad * (shifted.abs() < SURROGATE_WIDTH / 2).to(grad.dtype) / SURROGATE_WIDTH


def box_spike(shifted: Tensor) -> Tensor:
    """The spike function with the rectangular surrogate, for snnTorch's ``spike_grad`` slot."""
    return _BoxSpike.apply(shifted)


def snntorch() -> Net:
    """snnTorch ``Leaky`` neurons stepped one time step at a time (snnTorch's tutorial style).

    ``reset_mechanism="zero", reset_delay=False`` resets in the step that fires; snnTorch's state
    is mem[t] = beta mem[t-1] + X[t], reset to 0 after a spike, so beta = 0.3 and threshold 0.3
    match. ``spike_grad`` is the box surrogate above. Batch norm sees B frames per call.
    """
    import snntorch as snn

    def leaky() -> nn.Module:
        return snn.Leaky(
            beta=DECAY, threshold=THRESHOLD, spike_grad=box_spike, reset_mechanism="zero", reset_delay=False
        )

    layers = nn.ModuleList(_per_frame_layers(leaky))

    def forward(x: Tensor) -> Tensor:
        membranes = {i: m.init_leaky() for i, m in enumerate(layers) if isinstance(m, snn.Leaky)}
        outputs = []
        for x_t in x:
            h = x_t
            for i, module in enumerate(layers):
                if i in membranes:
                    h, membranes[i] = module(h, membranes[i])
                else:
                    h = module(h)
            outputs.append(h)
        return torch.stack(outputs).mean(0)

    return Net(layers, forward)


def norse() -> Net:
    """Norse ``LIFBoxCell`` (one-state LIF) in a ``SequentialState``, stepped over time.

    Norse integrates v[t] = v[t-1] + dt/tau (X[t] - v[t-1]); dt/tau = 0.7 gives
    v = 0.3 v[t-1] + 0.7 X[t], i.e. 0.7 times the reference potential, so the threshold is
    0.7 * 0.3. Norse has no box surrogate: the ``triangle`` surrogate is used.
    """
    from norse.torch import LIFBoxCell, LIFBoxParameters, SequentialState

    gain = 1.0 - DECAY
    params = LIFBoxParameters(
        tau_mem_inv=torch.as_tensor(gain / 1e-3),
        v_th=torch.as_tensor(THRESHOLD * gain),
        method="triangle",
        alpha=1.0 / SURROGATE_WIDTH,
    )
    stack = SequentialState(*_per_frame_layers(lambda: LIFBoxCell(params, dt=1e-3)))

    def forward(x: Tensor) -> Tensor:
        state = None
        outputs = []
        for x_t in x:
            out, state = stack(x_t, state)
            outputs.append(out)
        return torch.stack(outputs).mean(0)

    return Net(stack, forward)


BUILDERS: dict[str, Callable[[], Net]] = {
    "asa-snn (none)": lambda: asa_snn("none"),
    "asa-snn (asa2)": lambda: asa_snn("asa2"),
    "asa-snn (asa1)": lambda: asa_snn("asa1"),
    "asa-snn (none, NCHW)": lambda: asa_snn("none", torch.contiguous_format),
    "asa-snn (none, unfused)": lambda: asa_snn("none", fuse_bn_pool=False),
    "asa-snn (asa2, reference)": lambda: asa_snn("asa2", attention_backend="reference"),
    "asa-snn (asa2, Y whole)": lambda: asa_snn("asa2", feed_neuron=False),
    "asa-snn (asa2, compiled)": lambda: asa_snn("asa2", attention_backend="compiled"),
    "asa-snn (asa1, compiled)": lambda: asa_snn("asa1", attention_backend="compiled"),
    "spikingjelly": spikingjelly,
    "spikingjelly (cupy)": lambda: spikingjelly("cupy"),
    "spikingjelly (triton)": lambda: spikingjelly("triton"),
    "snntorch": snntorch,
    "norse": norse,
    "relu (batched)": relu_batched,
    "relu (step by step)": relu_stepwise,
    "relu (batched, NHWC)": lambda: relu_batched(torch.channels_last),
    "relu (step, NHWC)": lambda: relu_stepwise(torch.channels_last),
}
"""Benchmark entries by display name; each builds its net fresh (imports its library lazily)."""

REQUIRES: dict[str, tuple[str, ...]] = {
    "spikingjelly": ("spikingjelly",),
    "spikingjelly (cupy)": ("spikingjelly", "cupy"),
    "spikingjelly (triton)": ("spikingjelly", "triton"),
    "snntorch": ("snntorch",),
    "norse": ("norse",),
}
"""The packages an entry needs beyond torch and asa_snn."""
