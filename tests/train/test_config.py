"""Config files: TOML and YAML agree, overrides apply, errors name the file and key, recipes parse."""

from importlib.resources import files

import pytest
import yaml

from asa_snn.errors import AsaSnnError
from asa_snn.models.registry import NETWORKS
from asa_snn.train.config import load_config, parse_override

RECIPES = sorted(p.name for p in files("asa_snn.configs").iterdir() if p.name.endswith(".toml"))


def test_toml_and_yaml_give_the_same_config(tmp_path, tiny_config_file):
    from asa_snn.train.config import tomllib

    yaml_file = tmp_path / "tiny.yaml"
    yaml_file.write_text(yaml.safe_dump(tomllib.loads(tiny_config_file.read_text())))
    from_toml, from_yaml = load_config(tiny_config_file), load_config(yaml_file)
    assert from_toml.to_dict() == from_yaml.to_dict()
    assert from_toml.model.input_shape == (2, 16, 16)
    assert from_toml.model.network_options == {"channels": [4, 8]}
    assert from_toml.data.sensor_size == (16, 16)


def test_overrides_replace_single_values(tiny_config_file):
    config = load_config(
        tiny_config_file, ["model.attention=asa2", "train.epochs=7", "optim.lr=0.5", "data.root=some/folder"]
    )
    assert (config.model.attention, config.train.epochs, config.optim.lr) == ("asa2", 7, 0.5)
    assert config.data.root == "some/folder"
    assert config.train.batch_size == 8
    assert parse_override("model.network_options.channels=[2, 3]") == (
        ["model", "network_options", "channels"],
        [2, 3],
    )


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("train.epoch=3", ["train.epoch", "epochs"]),
        ("model.network=resnet", ["model.network", "resnet", "speck_net"]),
        ("model.neuron=hodgkin", ["model.neuron", "hodgkin", "lif"]),
        ("model.attention=cbam", ["model.attention", "cbam", "asa1"]),
        ("train.epochs='three'", ["train.epochs", "three", "int"]),
        ("optim.lr=true", ["optim.lr", "float"]),
        ("train.loss=hinge", ["train.loss", "mse_rate"]),
    ],
)
def test_bad_values_name_file_and_key(tiny_config_file, override, words):
    with pytest.raises(AsaSnnError) as info:
        load_config(tiny_config_file, [override])
    message = str(info.value)
    assert str(tiny_config_file) in message
    for word in words:
        assert word in message


def test_unknown_section_and_missing_file(tmp_path, tiny_config_file):
    with pytest.raises(AsaSnnError, match=r"unknown section"):
        load_config(tiny_config_file, ["optimizer.lr=1"])
    with pytest.raises(AsaSnnError, match=r"does not exist"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(AsaSnnError, match=r"section\.key=value"):
        load_config(tiny_config_file, ["epochs=3"])


def test_timesteps_must_match_frames(tiny_config_file):
    with pytest.raises(AsaSnnError, match=r"model\.timesteps"):
        load_config(tiny_config_file, ["model.timesteps=8"])


def test_shipped_recipes_include_the_papers():
    assert {
        "gesture_arch_a.toml",
        "gesture_arch_a_asa1.toml",
        "gait_day_arch_a.toml",
        "gait_night_arch_d.toml",
        "gesture_arch_b_plif.toml",
        "dailyaction_arch_b.toml",
        "hardvs_sew_resnet18.toml",
        "synthetic_speck.toml",
        "synthetic_arch_a_small.toml",
        "nmnist_small.toml",
    } <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_parses_and_its_spec_builds(name):
    from asa_snn.models.registry import build_model

    config = load_config(files("asa_snn.configs") / name)
    assert config.model.network in NETWORKS
    assert config.model.timesteps == config.data.n_steps
    if config.model.network in ("speck_net", "arch_a", "arch_d") and config.model.timesteps <= 60:
        model = build_model(config.model)
        assert model.input_shape == config.model.input_shape


def test_paper_gesture_recipe_values():
    config = load_config(files("asa_snn.configs") / "gesture_arch_a_asa1.toml")
    assert (config.data.dt_us, config.data.n_steps, config.data.downsample) == (15_000, 60, 4)
    assert (config.optim.lr, config.optim.weight_decay, config.optim.lr_min) == (1e-4, 1e-4, 1e-6)
    assert (config.train.epochs, config.train.batch_size, config.train.loss) == (200, 32, "mse_rate")
    assert (config.model.attention, config.train.eval_windows) == ("asa1", 10)
