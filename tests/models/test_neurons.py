"""Spiking neurons: hand-computed traces, threshold semantics, resets, surrogate values, recording,
and agreement of the fused loops with the step-by-step autograd reference."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from asa_snn.devices import available_devices
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.models.firing import MultiSpike, ResetBySubtraction, ResetToZero, SpikeAbove, SpikeAtOrAbove
from asa_snn.models.neurons import IAF, LIF, CubaLIF, ParametricLIF, record_states
from asa_snn.models.surrogate import (
    ATan,
    PeriodicExponential,
    Rectangular,
    SingleExponential,
    surrogate_spike,
)

BACKENDS = ["fused", "reference"]
DEVICES = [pytest.param(device, id=str(device)) for device in available_devices()]


def _trace(values, dtype=torch.float64):
    """A [T, 1] input from a list of per-step values."""
    return torch.tensor(values, dtype=dtype).reshape(-1, 1)


def _run(neuron, x):
    """(spikes, membrane before reset), both [T] for a [T, 1] input."""
    with record_states(neuron) as records:
        spikes = neuron(x)
    return spikes.flatten(), records[""].membrane.flatten()


# ---------------------------------------------------------------- hand-computed traces


@pytest.mark.parametrize("backend", BACKENDS)
def test_lif_trace(backend):
    # u = [0.2, 0.2 + 0.3*0.2, 0.5 + 0.3*0.26, 0.3*0*0.578 + 0]
    spikes, membrane = _run(LIF(backend=backend), _trace([0.2, 0.2, 0.5, 0.0]))
    assert spikes.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert_close(membrane, torch.tensor([0.2, 0.26, 0.578, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lif_spikes_at_threshold_equality(backend, dtype):
    spikes = LIF(backend=backend)(_trace([0.3, 0.0], dtype)).flatten()
    assert spikes.tolist() == [1.0, 0.0]
    below = torch.nextafter(torch.tensor(0.3, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    assert LIF(backend=backend)(below.reshape(1, 1)).item() == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_lif_gradient_through_reset_and_decay(backend):
    # L = s0 + s1, u0 = 0.35 (spikes), u1 = 0.3*0.35*(1-1) + 0.2 = 0.2; box surrogate = 2 at both.
    # dL/dx1 = 2; dL/dx0 = 2 + 2 * 0.3 * ((1 - s0) - u0 * 2) = 2 - 0.42 = 1.58 (reset not detached)
    x = _trace([0.35, 0.2]).requires_grad_()
    LIF(backend=backend)(x).sum().backward()
    assert_close(x.grad.flatten(), torch.tensor([1.58, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_parametric_lif_trace(backend):
    # tau = 2: V = V + (X - V) / 2 -> 0.5, 0.75, 0.875, 0.875 + (2 - 0.875) / 2 = 1.4375 (spike)
    neuron = ParametricLIF(backend=backend).double()
    assert neuron.tau.item() == pytest.approx(2.0)
    spikes, membrane = _run(neuron, _trace([1.0, 1.0, 1.0, 2.0, 0.0]))
    assert spikes.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert membrane.tolist() == [0.5, 0.75, 0.875, 1.4375, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_parametric_lif_tau_gradient(backend):
    # one step: V = k x with k = sigmoid(w) = 0.5; dL/dw = atan'(V - 1) * x * k (1 - k)
    neuron = ParametricLIF(backend=backend).double()
    neuron(_trace([1.5])).sum().backward()
    expected = 1 / (1 + (math.pi / 4) ** 2) * 1.5 * 0.25
    assert neuron.w.grad.item() == pytest.approx(expected, rel=1e-12)
    assert neuron.w.grad.item() != 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_iaf_subtract_versus_zero_reset(backend):
    x = _trace([0.75, 0.75, 0.75, 0.75])
    spikes, membrane = _run(IAF(reset=ResetBySubtraction(), backend=backend), x)
    assert spikes.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert membrane.tolist() == [0.75, 1.5, 1.25, 1.0]
    spikes, membrane = _run(IAF(reset=ResetToZero(), backend=backend), x)
    assert spikes.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert membrane.tolist() == [0.75, 1.5, 0.75, 1.5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_iaf_lower_bound(backend):
    x = _trace([-2.0, 0.5, 0.75])
    assert _run(IAF(min_v=-1.0, backend=backend), x)[1].tolist() == [-2.0, -0.5, 0.25]
    assert _run(IAF(backend=backend), x)[1].tolist() == [-2.0, -1.5, -0.75]


@pytest.mark.parametrize("backend", BACKENDS)
def test_iaf_multi_spike_counts(backend):
    x = _trace([2.5, 0.75, 0.0])
    spikes, membrane = _run(IAF(fire=MultiSpike(), backend=backend), x)
    assert spikes.tolist() == [2.0, 1.0, 0.0]
    assert membrane.tolist() == [2.5, 1.25, 0.25]
    spikes, membrane = _run(IAF(fire=MultiSpike(), reset=ResetToZero(), backend=backend), x)
    assert spikes.tolist() == [2.0, 0.0, 0.0]
    assert membrane.tolist() == [2.5, 0.75, 0.75]


def test_cuba_lif_strict_threshold():
    # du = dv = 0: u = 1 stays, v = 1 (equal, no spike) then 2 (spike)
    spikes, membrane = _run(CubaLIF(du=0.0, dv=0.0), _trace([1.0, 0.0]))
    assert spikes.tolist() == [0.0, 1.0]
    assert membrane.tolist() == [1.0, 2.0]


def test_cuba_lif_current_persists_after_spike():
    # no current decay: u = 1.5 forever; v restarts from 0 after every spike and refills from u
    spikes, membrane = _run(CubaLIF(du=0.0, dv=0.0), _trace([1.5, 0.0, 0.0]))
    assert spikes.tolist() == [1.0, 1.0, 1.0]
    assert membrane.tolist() == [1.5, 1.5, 1.5]
    # halving: u = 1.5, .75, .375, .1875; v = 1.5 (spike), 0 + .75, .375 + .375, .375 + .1875
    spikes, membrane = _run(CubaLIF(du=0.5, dv=0.5), _trace([1.5, 0.0, 0.0, 0.0]))
    assert spikes.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert membrane.tolist() == [1.5, 0.75, 0.75, 0.5625]


def test_cuba_lif_bias():
    # du = 1 removes the current; v gains 0.25 per step, equals 1.0 at step 3 (no spike), fires at 1.25
    spikes, membrane = _run(CubaLIF(du=1.0, dv=0.0, bias=0.25), _trace([0.0] * 6))
    assert spikes.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert membrane.tolist() == [0.25, 0.5, 0.75, 1.0, 1.25, 0.25]


# ---------------------------------------------------------------- strategies


def _surrogate_grad(surrogate, values, v_th, fire=None):
    v = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    surrogate_spike(v, v_th, fire or SpikeAtOrAbove(), surrogate).sum().backward()
    return v.grad.tolist()


def test_rectangular_surrogate_values():
    # v - v_th = 0, 0.125, 0.25, -0.25, 0.375, -0.1875; box |d| < 0.25 of height 2
    values = [0.5, 0.625, 0.75, 0.25, 0.875, 0.3125]
    assert _surrogate_grad(Rectangular(0.5), values, 0.5) == [2.0, 2.0, 0.0, 0.0, 0.0, 2.0]


def test_atan_surrogate_values():
    grads = _surrogate_grad(ATan(2.0), [1.0, 1 + 1 / math.pi, 1 - 1 / math.pi], 1.0)
    assert grads == pytest.approx([1.0, 0.5, 0.5], rel=1e-12)


def test_exponential_surrogate_values():
    e = math.exp(-1)
    assert _surrogate_grad(SingleExponential(0.5), [1.0, 1.5, 0.5, 2.0], 1.0) == pytest.approx(
        [2.0, 2 * e, 2 * e, 2 * e**2]
    )
    periodic = _surrogate_grad(PeriodicExponential(0.5), [1.0, 2.0, 3.0, 2.5, 0.5, 0.0], 1.0, MultiSpike())
    assert periodic == pytest.approx([2.0, 2.0, 2.0, 2 * e, 2 * e, 2 * e**2])


def test_firing_rules_and_resets():
    v = torch.tensor([0.5, 1.0, 1.5, 3.2])
    assert SpikeAtOrAbove()(v, 1.0).tolist() == [0.0, 1.0, 1.0, 1.0]
    assert SpikeAbove()(v, 1.0).tolist() == [0.0, 0.0, 1.0, 1.0]
    counts = MultiSpike()(v, 1.0)
    assert counts.tolist() == [0.0, 1.0, 1.0, 3.0]
    assert ResetToZero()(v, counts, 1.0).tolist() == [0.5, 0.0, 0.0, 0.0]
    assert_close(ResetBySubtraction()(v, counts, 1.0), torch.tensor([0.5, 0.0, 0.5, 0.2]))


# ---------------------------------------------------------------- recording, state, batches


@pytest.mark.parametrize("backend", BACKENDS)
def test_recording_shows_membrane_before_reset(backend):
    model = nn.Sequential(nn.Identity(), LIF(backend=backend), IAF(backend=backend))
    x = torch.tensor([0.2, 0.2, 0.5, 0.0]).reshape(4, 1, 1)
    with record_states(model) as records:
        out = model(x)
    assert sorted(records) == ["1", "2"]
    lif = records["1"]
    assert lif.spikes.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert lif.membrane[2].item() >= 0.3  # the spiking step is recorded before its reset
    assert lif.membrane[3].item() == 0.0  # the state the neuron kept was reset to 0
    assert not lif.membrane.requires_grad
    assert torch.equal(records["2"].spikes, out)
    assert records["2"].membrane.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert not model[1].record and model[1].last_record is None


@pytest.mark.parametrize("neuron", [LIF(), ParametricLIF(), IAF(), CubaLIF(du=0.5, dv=0.5)])
def test_recording_off_stores_nothing(neuron):
    neuron(torch.rand(3, 2, 4))
    assert neuron.last_record is None
    neuron.record = True
    neuron(torch.rand(3, 2, 4))
    assert neuron.last_record.membrane.shape == (3, 2, 4)


def test_record_states_needs_a_neuron():
    with pytest.raises(AsaSnnError, match="Linear contains no SpikingNeuron"), record_states(nn.Linear(2, 2)):
        pass


@pytest.mark.parametrize(
    "make", [LIF, ParametricLIF, IAF, lambda: CubaLIF(du=0.3, dv=0.2)], ids=["LIF", "PLIF", "IAF", "Cuba"]
)
def test_batch_and_call_independence(make):
    torch.manual_seed(0)
    neuron = make()
    x = torch.rand(8, 3, 2, 5, 5) * 1.6
    together = neuron(x)
    assert together.shape == x.shape
    assert together.sum() > 0
    for b in range(3):
        assert torch.equal(neuron(x[:, b : b + 1]), together[:, b : b + 1])
    assert torch.equal(neuron(x), together)


# ---------------------------------------------------------------- fused versus reference

CONFIGS = {
    "LIF": lambda backend: LIF(backend=backend),
    "PLIF": lambda backend: ParametricLIF(init_tau=1.7, backend=backend),
    "IAF-subtract": lambda backend: IAF(backend=backend),
    "IAF-zero-min": lambda backend: IAF(reset=ResetToZero(), min_v=-0.5, backend=backend),
    "IAF-multi": lambda backend: IAF(
        fire=MultiSpike(), surrogate=PeriodicExponential(), min_v=-1.0, backend=backend
    ),
}


def _forward_backward(config, backend, x, upstream, dtype, device="cpu"):
    neuron = CONFIGS[config](backend).to(device, dtype)
    x = x.to(device, dtype, copy=True).requires_grad_()
    with record_states(neuron) as records:
        spikes = neuron(x)
    (spikes * upstream.to(device, dtype)).sum().backward()
    params = [p.grad for p in neuron.parameters()]
    return spikes, records[""].membrane, x.grad, params


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_matches_reference(config, dtype, device):
    torch.manual_seed(1)
    scale = 2.5 if config == "IAF-multi" else 0.8
    x = torch.randn(12, 4, 3, 6) * scale
    upstream = torch.randn(x.shape)
    fused = _forward_backward(config, "fused", x, upstream, dtype, device)
    reference = _forward_backward(config, "reference", x, upstream, dtype, device)
    assert fused[0].device.type == device.type
    assert torch.equal(fused[0], reference[0])
    assert torch.equal(fused[1], reference[1])
    assert fused[0].sum() > 0 and (fused[2] != 0).any()
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    assert_close(fused[2], reference[2], **tolerance)
    assert_close(fused[3], reference[3], **tolerance)
    if config == "PLIF":
        assert fused[3][0].item() != 0.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_fused_on_a_device_matches_the_cpu(config, device):
    """Spikes equal and gradients within float64 rounding of the CPU's (the same on the CPU)."""
    torch.manual_seed(4)
    x = torch.randn(9, 3, 5) * (2.5 if config == "IAF-multi" else 0.8)
    upstream = torch.randn(x.shape)
    on_cpu = _forward_backward(config, "fused", x, upstream, torch.float64)
    on_device = _forward_backward(config, "fused", x, upstream, torch.float64, device)
    assert torch.equal(on_device[0].cpu(), on_cpu[0])
    assert_close(on_device[2].cpu(), on_cpu[2], rtol=1e-12, atol=1e-12)
    for a, b in zip(on_device[3], on_cpu[3], strict=True):
        assert_close(a.cpu(), b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_half_precision_input_is_integrated_in_float32(config):
    """bfloat16 input to a float32 neuron (as autocast hands it over): the same spikes, membrane
    and (bfloat16-rounded) gradients as its float32 copy."""
    torch.manual_seed(5)
    x = (torch.randn(10, 3, 4) * (2.5 if config == "IAF-multi" else 0.8)).bfloat16()
    upstream = torch.randn(x.shape).bfloat16()
    results = []
    for dtype in (torch.bfloat16, torch.float32):
        neuron = CONFIGS[config]("fused")
        inputs = x.to(dtype, copy=True).requires_grad_()
        with record_states(neuron) as records:
            spikes = neuron(inputs)
        (spikes * upstream.to(dtype)).sum().backward()
        results.append((spikes, records[""].membrane, inputs.grad))
    half, wide = results
    assert half[0].dtype == torch.bfloat16 and half[1].dtype == torch.float32
    assert torch.equal(half[0].float(), wide[0])
    assert torch.equal(half[1], wide[1])
    assert torch.equal(half[2], wide[2].bfloat16())


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_first_layout_from_a_permuted_tensor(backend):
    torch.manual_seed(2)
    batch_first = torch.rand(3, 7, 4, 2) * 0.6  # [B, T, C, F], as the attention layout holds it
    permuted = batch_first.permute(1, 0, 2, 3)
    assert not permuted.is_contiguous()
    assert torch.equal(LIF(backend=backend)(permuted), LIF(backend=backend)(permuted.contiguous()))


def test_fused_gradient_reaches_upstream_parameters():
    x = torch.rand(5, 2, 3)
    weight = torch.tensor(2.0, requires_grad=True)
    LIF()(x * weight).sum().backward()
    reference_weight = torch.tensor(2.0, requires_grad=True)
    LIF(backend="reference")(x * reference_weight).sum().backward()
    assert_close(weight.grad, reference_weight.grad)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "bad", [torch.zeros(5), torch.zeros(0, 2), torch.zeros(3, 2, dtype=torch.int64), [[0.0]]]
)
def test_input_must_be_time_first_float_tensor(bad):
    with pytest.raises(InputFormatError, match=r"LIF: input x must be .*\[T, B, \.\.\.\]"):
        LIF()(bad)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: LIF(backend="cuda"), "LIF.backend must be one of \\['fused', 'reference'\\], got 'cuda'"),
        (lambda: LIF(decay=1.5), "LIF.decay must lie in \\[0, 1\\], got 1.5"),
        (lambda: LIF(v_th=0.0), "LIF.v_th must be > 0, got 0.0"),
        (lambda: ParametricLIF(init_tau=1.0), "ParametricLIF.init_tau must be > 1"),
        (lambda: IAF(min_v=1.0), "IAF.min_v must be below v_th=1.0, got 1.0"),
        (lambda: CubaLIF(du=-0.1, dv=0.5), "CubaLIF.du must lie in \\[0, 1\\], got -0.1"),
        (lambda: CubaLIF(du=0.1, dv=2.0), "CubaLIF.dv must lie in \\[0, 1\\], got 2.0"),
        (lambda: Rectangular(width=0.0), "Rectangular.width must be > 0, got 0.0"),
        (lambda: ATan(alpha=-1.0), "ATan.alpha must be > 0"),
    ],
)
def test_bad_parameters_are_named(make, field):
    with pytest.raises(AsaSnnError, match=field):
        make()
