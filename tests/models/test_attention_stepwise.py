"""The stepwise ASA backend against the whole-tensor reference: same values, same gradients."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys

import pytest
import torch

from asa_snn.devices import available_devices
from asa_snn.errors import AsaSnnError
from asa_snn.models.attention import AdvancedSpatialAttention, make_attention
from asa_snn.models.attention.asa import PooledImportance, StraightThroughSelector, auto_backend
from asa_snn.models.attention.stepwise import spatial_attention_passes

SHAPE = (6, 3, 8, 5, 7)
"""[T, B, C, H, W]: odd H and W, more channels than steps."""
DEVICES = [pytest.param(device, id=str(device)) for device in available_devices()]
WHOLE_STEPS = pytest.mark.parametrize("whole_steps", [False, True], ids=["step-by-step", "all-steps"])
"""The stepwise loops one step at a time (the CPU's choice) and over all steps at once (a GPU's)."""


def _inputs(kind: str, memory_format: torch.memory_format) -> torch.Tensor:
    torch.manual_seed(7)
    ties = kind == "ties"
    x = torch.randint(-2, 3, SHAPE).double() if ties else torch.randn(SHAPE, dtype=torch.float64)
    frames = x.flatten(0, 1).contiguous(memory_format=memory_format)
    return frames.unflatten(0, SHAPE[:2])


@pytest.mark.parametrize("attention", ["asa1", "asa2", "asa_reference"])
@pytest.mark.parametrize("values", ["continuous", "ties"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@WHOLE_STEPS
@pytest.mark.parametrize("device", DEVICES)
def test_stepwise_matches_reference(attention, values, memory_format, whole_steps, device):
    torch.manual_seed(0)
    stepwise = make_attention(attention, SHAPE[2], SHAPE[0]).double().to(device)
    stepwise.whole_steps = whole_steps
    with torch.no_grad():
        for parameter in stepwise.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    stepwise.backend = "stepwise"
    reference = copy.deepcopy(stepwise)
    reference.backend = "reference"
    x = _inputs(values, memory_format).to(device)
    weight = torch.randn(SHAPE, dtype=torch.float64).to(device)
    x_stepwise, x_reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_stepwise, y_reference = stepwise(x_stepwise), reference(x_reference)
    (y_stepwise * weight).sum().backward()
    (y_reference * weight).sum().backward()
    assert y_stepwise.device.type == device.type
    torch.testing.assert_close(y_stepwise, y_reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_stepwise.grad, x_reference.grad, rtol=1e-10, atol=1e-12)
    assert x_stepwise.grad.abs().sum() > 0
    for (name, a), b in zip(stepwise.named_parameters(), reference.parameters(), strict=True):
        if b.grad is None:
            assert a.grad is None, name
        else:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12, msg=name)


def _smooth_passes(x, mask_weight, conv_weight, whole_steps=False):
    """The fused passes with a real-valued mask and smooth maps, so every gradient is a derivative."""

    def select(f_avg, f_max):
        return torch.sigmoid(mask_weight * f_avg - f_max)

    def maps(mean1, max1, mean2, max2):
        return torch.tanh(conv_weight * mean1 + max1), torch.sigmoid(mean2 - conv_weight * max2)

    return spatial_attention_passes(x, 0.3, select, maps, (mask_weight, conv_weight), whole_steps)


@WHOLE_STEPS
def test_fused_passes_gradient_with_real_valued_masks(whole_steps):
    torch.manual_seed(3)
    x = torch.randn(3, 2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    weights = [torch.tensor(value, dtype=torch.float64, requires_grad=True) for value in (0.7, -1.3)]
    assert torch.autograd.gradcheck(_smooth_passes, (x, *weights, whole_steps))


@WHOLE_STEPS
def test_channel_max_gradient_is_shared_by_ties_as_amax_shares_it(whole_steps):
    """M1 = F_max of the one channel (3, reached twice), A1 = 1, A2 = 0: Y = F_max X."""
    x = torch.tensor([[[[[1.0, 3.0], [3.0, 0.0]]]]], dtype=torch.float64, requires_grad=True)

    def select(f_avg, f_max):
        return f_max

    def maps(mean1, max1, mean2, max2):
        return torch.ones_like(mean1), torch.zeros_like(mean2)

    spatial_attention_passes(x, 0.5, select, maps, whole_steps=whole_steps).sum().backward()
    # d sum(Y) / dX = F_max + sum(X) * dF_max / dX, the max's share 1/2 at each of the two 3s
    assert x.grad.flatten().tolist() == [3.0, 3.0 + 7.0 / 2, 3.0 + 7.0 / 2, 3.0]


@WHOLE_STEPS
def test_group_max_gradient_is_shared_by_ties(whole_steps):
    """M1 = 1, A1 = max over (T, C) of X M1 (pixel 0: 3 at both steps; pixel 1: 1), A2 = 0."""
    x = torch.tensor([[[[[3.0, 1.0]]]], [[[[3.0, 0.0]]]]], dtype=torch.float64, requires_grad=True)

    def select(f_avg, f_max):
        return torch.ones_like(f_avg)

    def maps(mean1, max1, mean2, max2):
        return max1, torch.zeros_like(mean2)

    spatial_attention_passes(x, 0.5, select, maps, whole_steps=whole_steps).sum().backward()
    # dY/dX[t, w] = A1[w] + (sum_t X[t, w]) dA1[w]/dX[t, w]
    assert x.grad.flatten().tolist() == [3.0 + 6.0 / 2, 1.0 + 1.0, 3.0 + 6.0 / 2, 1.0]


def test_output_keeps_the_frame_layout():
    x = _inputs("continuous", torch.channels_last)
    module = make_attention("asa2", SHAPE[2], SHAPE[0]).double()
    assert module(x).flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


def test_unknown_backend_is_named():
    with pytest.raises(AsaSnnError, match=r"backend='fast'.*auto, stepwise, reference, compiled"):
        AdvancedSpatialAttention(8, 6, PooledImportance(), StraightThroughSelector(), backend="fast")
    with pytest.raises(AsaSnnError, match=r"asa1\): backend='gpu'"):
        make_attention("asa1", 8, 6, backend="gpu")


def test_the_backend_is_an_attention_option_and_auto_is_stepwise_on_the_cpu():
    assert make_attention("asa2", 8, 6).backend == "auto"
    assert make_attention("asa2", 8, 6, backend="reference").backend == "reference"
    assert make_attention("asa_reference", 8, 6, backend="stepwise").backend == "stepwise"
    assert auto_backend(torch.device("cpu")) == "stepwise"


@WHOLE_STEPS
def test_bfloat16_counts_every_tie_of_the_max(whole_steps):
    """2048 masked zeros tie for the max of X M1 where X < 0: bfloat16 cannot count that far."""
    torch.manual_seed(0)
    x = (-torch.rand(32, 1, 128, 1, 1) - 0.1).bfloat16().requires_grad_()
    fixed = (torch.rand(32, 1, 128) < 0.5).bfloat16()
    gate = torch.ones((), dtype=torch.bfloat16, requires_grad=True)

    def select(f_avg, f_max):
        return fixed * gate + (1 - fixed) * (gate - 1)  # = fixed, every entry's slope 1

    def maps(mean1, max1, mean2, max2):
        return max1, torch.zeros_like(mean2)

    spatial_attention_passes(x, 0.5, select, maps, (gate,), whole_steps).sum().backward()
    ties = int((fixed == 0).sum())
    assert ties > 256
    # Y = A1 X M1 with A1 = max1 = 0, shared by the masked zeros: d sum(Y) / d gate =
    # sum(X M1) * sum over the masked entries of X / ties.
    total = float((x.detach().float()[..., 0, 0] * fixed.float()).sum())
    masked = float(x.detach().float()[..., 0, 0][fixed == 0].sum())
    torch.testing.assert_close(gate.grad.float(), torch.tensor(total * masked / ties), rtol=2e-2, atol=1e-6)


def test_second_derivatives_are_refused():
    x = torch.randn(2, 1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    weights = [torch.tensor(value, dtype=torch.float64, requires_grad=True) for value in (0.7, -1.3)]
    (grad,) = torch.autograd.grad(_smooth_passes(x, *weights).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad"):
        grad.sum().backward()


@pytest.mark.parametrize("attention", ["asa1", "asa2"])
def test_top_k_under_bfloat16_autocast_selects_what_float32_selects(attention):
    """bfloat16 input in a bfloat16 autocast region: the masks of the same values in float32."""
    torch.manual_seed(6)
    module = make_attention(attention, 64, 8)
    x = torch.randn(8, 16, 64, 5, 5).bfloat16()
    expected = module.masks(x.float())[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        selected = module.masks(x)[0]
        y = module(x.requires_grad_())
    assert torch.equal(selected, expected)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    # what it guards against: the same scores rounded to bfloat16 select other channels
    scores = module.importance_scores(x.float()).detach()
    assert scores.dtype == torch.float32
    channels = [torch.topk(s, 32, dim=2).indices.sort(dim=2).values for s in (scores, scores.bfloat16())]
    assert not torch.equal(*channels)


COMPILED_AGAINST_REFERENCE = """
import copy, sys
import torch
from asa_snn.models.attention import make_attention

attention, device, shape = sys.argv[1], torch.device(sys.argv[2]), (6, 3, 8, 5, 7)
torch.manual_seed(2)
compiled = make_attention(attention, shape[2], shape[0]).double().to(device)
compiled.backend = "compiled"
reference = copy.deepcopy(compiled)
reference.backend = "reference"
x = torch.randint(-2, 3, shape).double().to(device)  # many ties of the max
x_compiled, x_reference = x.clone().requires_grad_(), x.clone().requires_grad_()
weight = torch.randn(shape, dtype=torch.float64).to(device)
y_compiled, y_reference = compiled(x_compiled), reference(x_reference)
(y_compiled * weight).sum().backward()
(y_reference * weight).sum().backward()
torch.testing.assert_close(y_compiled, y_reference, rtol=1e-12, atol=1e-12)
torch.testing.assert_close(x_compiled.grad, x_reference.grad, rtol=1e-10, atol=1e-12)
for a, b in zip(compiled.parameters(), reference.parameters(), strict=True):
    if b.grad is not None:
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
assert copy.deepcopy(compiled).backend == "compiled"  # the compiled function stays outside
print("same")
"""
"""The compiled backend against the reference, run in its own process: torch.compile leaves its
modules, caches and compile workers behind, which would weigh on every later test's process."""


@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize("attention", ["asa1", "asa2"])
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_backend_matches_reference(attention, device):
    """The compiled reference (the GPU's choice) keeps the reference's values, gradients and ties."""
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    command = [sys.executable, "-c", COMPILED_AGAINST_REFERENCE, attention, str(device)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-3000:]


def test_a_compiler_that_is_missing_is_one_error_naming_the_backend(tmp_path):
    """No working C++ compiler (a fresh cache, so it must compile): one AsaSnnError, not Inductor's dump."""
    script = (
        "import torch\n"
        "from asa_snn.errors import AsaSnnError\n"
        "from asa_snn.models.attention import make_attention\n"
        "module = make_attention('asa2', 8, 6, backend='compiled')\n"
        "try:\n"
        "    module(torch.rand(6, 2, 8, 5, 5))\n"
        "except AsaSnnError as error:\n"
        "    print(error)\n"
    )
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-c++"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"),
        "TORCHINDUCTOR_COMPILE_THREADS": "1",
    }
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    message = done.stdout.strip()
    assert message.startswith("AdvancedSpatialAttention(asa2): backend='compiled' could not compile on cpu")
    assert "use model.attention_options = {backend = 'stepwise'}" in message and "\n" not in message
