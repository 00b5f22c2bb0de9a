"""Errors raised inside DataLoader worker processes become the CLI's one line, like any other."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from asa_snn.cli import _error_line
from asa_snn.errors import InputFormatError


class _Failing(Dataset):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        raise self.error


def _raised_by_worker(error: Exception) -> BaseException:
    with pytest.raises(Exception) as caught:
        next(iter(DataLoader(_Failing(error), batch_size=2, num_workers=1)))
    return caught.value


def test_a_users_error_in_a_worker_keeps_its_own_message_without_the_traceback():
    exc = _raised_by_worker(InputFormatError("rec_3.bs2: truncated event at byte 40"))
    assert "Traceback" in str(exc)  # what PyTorch hands over
    line, status = _error_line(exc)
    assert (line, status) == ("rec_3.bs2: truncated event at byte 40", 1)


def test_shared_memory_failures_say_what_to_change():
    problem = "unable to resize file </torch_1_2_0> to the right size: File too large (27)"
    exc = _raised_by_worker(RuntimeError(problem))
    line, _ = _error_line(exc)
    assert line.startswith("DataLoader workers could not pass a batch through shared memory (/dev/shm)")
    assert "train.workers=0" in line and "\n" not in line


def test_a_bug_in_a_worker_is_an_internal_error_naming_the_original_type():
    line, _ = _error_line(_raised_by_worker(KeyError("frames")))
    assert line.startswith("internal error in a DataLoader worker: KeyError: 'frames'")
