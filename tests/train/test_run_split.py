"""with_test_samples: a larger synthetic test split that keeps the recipe's own recordings."""

import pytest
import torch

from asa_snn.errors import AsaSnnError
from asa_snn.train.config import load_config, resolve_config_path
from asa_snn.train.data import build_data
from asa_snn.train.run import with_test_samples


def test_a_larger_synthetic_test_split_starts_with_the_recipes_own_recordings(tiny_config_file):
    config = load_config(tiny_config_file)
    assert with_test_samples(config, None, "--test-samples") is config
    grown = with_test_samples(config, 30, "--test-samples")
    assert grown.data.n_test_samples == 30 and config.data.n_test_samples == 12
    assert grown.model == config.model and grown.train == config.train
    own, more = build_data(config), build_data(grown)
    assert (len(own.test), len(more.test)) == (12, 30)
    assert len(more.train) == len(own.train) and len(more.val) == len(own.val)
    for index in (0, 5, 11):
        assert torch.equal(more.test[index][0], own.test[index][0]), index
        assert more.test[index][1] == own.test[index][1]
    assert torch.equal(more.train[3][0], own.train[3][0]) and torch.equal(more.val[0][0], own.val[0][0])


def test_recorded_data_keeps_its_test_split_and_bounds_are_checked(tiny_config_file):
    nmnist = load_config(resolve_config_path("nmnist_small"))
    with pytest.raises(AsaSnnError, match=r"--test-samples 700: the data is .nmnist. recordings.*fraction"):
        with_test_samples(nmnist, 700, "--test-samples")
    with pytest.raises(AsaSnnError, match="n_test_samples"):
        with_test_samples(load_config(tiny_config_file), 0, "--test-samples")
