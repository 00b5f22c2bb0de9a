"""The device resolver: names it accepts, what it refuses, and what ``auto`` picks here."""

import pytest
import torch

from asa_snn.devices import available_devices, resolve_device
from asa_snn.errors import AsaSnnError


def test_cpu_and_auto_resolve_on_this_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")
    assert available_devices()[0] == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", "", "cuda:-1"])
def test_malformed_names_are_refused_with_the_setting_named(name):
    with pytest.raises(AsaSnnError, match=r"train\.device: .* expected one of auto, cpu, cuda"):
        resolve_device(name, where="train.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_refused_before_any_tensor_moves():
    with pytest.raises(AsaSnnError, match=r"no CUDA device.*use 'cpu' or 'auto'"):
        resolve_device("cuda:1", where="--device")
