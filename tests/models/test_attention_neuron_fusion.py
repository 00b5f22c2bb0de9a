"""ASA's mix fed straight into the neuron's loop (ConvBlock on the CPU): the spikes and gradients
of the attention followed by the neuron, and the two-module path wherever the fusion cannot apply."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from asa_snn.models.attention import make_attention
from asa_snn.models.blocks import ConvBlock
from asa_snn.models.firing import MultiSpike, ResetToZero
from asa_snn.models.neurons import IAF, LIF, ParametricLIF
from asa_snn.models.recording import count_spikes, record_states

T, B, C_IN, C, H, W = 6, 3, 2, 8, 10, 12
FUSED = "_SpatialAttentionThenNeuronBackward"
NEURONS = {
    "lif": lambda: LIF(v_th=0.3, decay=0.3),
    "iaf-subtract-min_v": lambda: IAF(v_th=0.5, min_v=-1.0),
    "iaf-multi-spike-zero": lambda: IAF(v_th=0.4, fire=MultiSpike(), reset=ResetToZero()),
}


def _block(attention: str, neuron: str) -> ConvBlock:
    torch.manual_seed(0)
    block = ConvBlock(nn.Conv2d(C_IN, C, 3, padding=1), NEURONS[neuron](), make_attention(attention, C, T))
    with torch.no_grad():
        for parameter in block.attention.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return block.double()


def _frames(values: str) -> torch.Tensor:
    torch.manual_seed(3)
    if values == "ties":
        return torch.randint(0, 2, (T, B, C_IN, H, W)).double()
    return 1.5 * torch.randn(T, B, C_IN, H, W, dtype=torch.float64)


def _run(block: ConvBlock, x: torch.Tensor, weight: torch.Tensor) -> tuple:
    x = x.clone().requires_grad_()
    spikes = block(x)
    grads = torch.autograd.grad((spikes * weight).sum(), [x, *block.parameters()], allow_unused=True)
    return spikes, [torch.zeros(()) if g is None else g for g in grads], spikes.grad_fn


@pytest.mark.parametrize("attention", ["asa1", "asa2", "asa_reference"])
@pytest.mark.parametrize("neuron", list(NEURONS))
@pytest.mark.parametrize("values", ["continuous", "ties"])
def test_fused_block_gives_the_reference_attention_then_the_neuron(attention, neuron, values):
    fused = _block(attention, neuron)
    reference = copy.deepcopy(fused)
    reference.attention.backend = "reference"  # whole-tensor equations, then the neuron module
    x = _frames(values)
    weight = torch.randn(T, B, C, H, W, dtype=torch.float64)
    spikes, grads, node = _run(fused, x, weight)
    expected, expected_grads, expected_node = _run(reference, x, weight)
    assert type(node).__name__ == FUSED and type(expected_node).__name__ != FUSED
    assert spikes.sum() > 0 and torch.equal(spikes, expected)
    assert grads[0].abs().sum() > 0
    names = ["x", *(name for name, _ in fused.named_parameters())]
    for name, got, want in zip(names, grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11, msg=name)


def test_where_the_fusion_cannot_apply_the_two_modules_run_with_the_same_result():
    block = _block("asa2", "lif")
    x = _frames("continuous")
    weight = torch.randn(T, B, C, H, W, dtype=torch.float64)
    spikes, grads, node = _run(block, x, weight)
    assert type(node).__name__ == FUSED

    def unfused(variant: ConvBlock) -> None:
        got, got_grads, got_node = _run(variant, x, weight)
        assert type(got_node).__name__ != FUSED
        assert torch.equal(got, spikes)
        for a, b in zip(got_grads, grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)

    hooked = copy.deepcopy(block)
    seen = []
    hooked.neuron.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().sum()))
    unfused(hooked)
    assert seen and float(seen[0]) == float(spikes.detach().sum())  # the hook saw the neuron's own call
    whole = copy.deepcopy(block)
    whole.attention.whole_steps = True  # a GPU's loop form: no step-by-step feed
    unfused(whole)
    with record_states(block) as records:
        unfused(block)
    assert records["neuron"].membrane.shape == (T, B, C, H, W)
    with count_spikes(block) as counts:
        block(x)
    assert counts.layers["neuron"].spikes == float(spikes.detach().sum())
    with torch.no_grad():  # evaluation without hooks takes the fed path and keeps nothing for backward
        assert torch.equal(block(x), spikes)
    with torch.inference_mode():
        assert torch.equal(block(x), spikes)


def test_a_neuron_that_scales_its_input_is_not_fed_by_the_attention():
    block = _block("asa2", "lif")
    block.neuron = ParametricLIF(init_tau=2.0, v_th=0.3).double()
    x = _frames("continuous").requires_grad_()
    spikes = block(x)
    assert type(spikes.grad_fn).__name__ != FUSED
    assert block.neuron.first_order_step(x) is None and LIF().first_order_step(x) is not None
    assert LIF().first_order_step(x.to(torch.bfloat16)) is None  # widened to float32 first: not fused
