"""Fixtures shared across the test folders: a tiny synthetic training config."""

import pytest

TINY = """\
[data]
kind = "synthetic"
n_samples = 48
n_test_samples = 12
n_classes = 3
sensor_size = [16, 16]
n_steps = 4
val_fraction = 0.25

[model]
network = "speck_net"
timesteps = 4
input_shape = [2, 16, 16]
num_classes = 3
network_options = { channels = [4, 8] }

[optim]
lr = 1e-2
weight_decay = 0.0
lr_min = 1e-3

[train]
epochs = 3
batch_size = 8
seed = 0
"""


@pytest.fixture
def tiny_config_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="session")
def speck():
    from graph_builders import speck_graph

    return speck_graph()


@pytest.fixture(scope="session")
def loihi():
    from graph_builders import loihi_graph

    return loihi_graph()
