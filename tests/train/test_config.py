"""Config files: TOML and YAML agree, overrides apply, errors name the file and key, recipes parse."""

import os
import subprocess
import sys
import typing
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.models.registry import MAX_PARAMETERS, MAX_STEP_ACTIVATIONS, NETWORKS
from asa_snn.train import config as config_module
from asa_snn.train.config import load_config, parse_override

REPO = Path(__file__).resolve().parents[2]
MAX_YAML_NODES = getattr(config_module, "MAX_YAML_NODES", 10_000)

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


# ---------------------------------------------------------------- hostile and broken config files


def billion_laughs() -> str:
    """Nine levels of anchors, each a list of nine aliases to the one before: under 500 bytes that
    expand to 9**9 (387 million) strings, then a data section that uses the last one."""
    text = "a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
    for level in range(1, 9):
        text += f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]\n"
    return text + "data: {kind: synthetic, root: *a8}\n"


_BOUNDED = """\
import resource, sys
from asa_snn.errors import AsaSnnError
from asa_snn.train.config import load_config
with open("/proc/self/status") as status:
    size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
cap = size_kb * 1024 + 512 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
try:
    load_config(sys.argv[1])
except AsaSnnError as exc:
    print("AsaSnnError:", exc)
"""


def test_yaml_billion_laughs_refused_in_bounded_memory(tmp_path):
    # the config is read in a child Python whose address space may grow by 512 MiB only: expanding
    # the aliases (the JSON round trip of the overrides did) takes more than 3 GB
    if not sys.platform.startswith("linux"):
        pytest.skip("the address-space cap needs Linux (/proc/self/status, RLIMIT_AS)")
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    assert path.stat().st_size < 500
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _BOUNDED, str(path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("\n") == 1
    message = result.stdout.removeprefix("AsaSnnError: ")
    assert str(path) in message and "line 5, column 5" in message
    assert f"more than {MAX_YAML_NODES} nodes" in message


def test_yaml_recursive_alias_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("data: &a\n  kind: synthetic\n  loop: *a\nmodel: {network: speck_net}\n")
    with pytest.raises(AsaSnnError, match=r"loop\.yaml: refused YAML file: line 3, column 9: .*recursive"):
        load_config(path)


def test_yaml_anchors_within_the_bound_still_load(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "data: {kind: synthetic, n_classes: 3, sensor_size: &side [16, 16], crop: *side, n_steps: &steps 4}\n"
        "model: {network: speck_net, timesteps: *steps, input_shape: [2, 16, 16], num_classes: 3}\n"
    )
    config = load_config(path)
    assert (config.model.timesteps, config.data.crop) == (4, (16, 16))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("data:\n  kind: synthetic\n model: x\n", "line 3, column 2: expected <block end>"),
        ("data: {kind: synthetic\nmodel: [1, 2\n", "line 2, column 6: expected ',' or '}'"),
        ("data:\n\tkind: synthetic\n", "line 2, column 1: found character '\\t' that cannot start any token"),
        ("data: \x00\n", "position 6: unacceptable character #x0000"),
        (
            "data: !!python/object/apply:os.system [true]\n",
            "line 1, column 7: could not determine a constructor",
        ),
    ],
)
def test_yaml_syntax_errors_are_one_line(tmp_path, text, where):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(AsaSnnError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: not a valid YAML file: {where}")


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        (
            "bad.toml",
            b"[data\nkind = 1\n",
            "not a valid TOML file: Expected ']' at the end of a table declaration",
        ),
        ("latin1.yaml", b"data:\n  kind: caf\xe9\n", "not a valid YAML file: byte 17 is not UTF-8"),
        ("deep.yaml", b"data: " + b"[" * 3000 + b"]" * 3000 + b"\n", "YAML nesting too deep to parse"),
        ("deep.toml", b"data = " + b"[" * 3000 + b"]" * 3000 + b"\n", "TOML nesting too deep to parse"),
    ],
)
def test_other_syntax_errors_are_one_line(tmp_path, name, data, fragment):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AsaSnnError) as info:
        load_config(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize(
    ("section", "found"),
    [
        ("null", "null (empty)"),
        ("[1, 2]", "a list ([1, 2])"),
        ("speck_net", "a str ('speck_net')"),
        ("3", "a int"),
    ],
)
def test_section_of_the_wrong_type_is_named(tmp_path, section, found):
    path = tmp_path / "section.yaml"
    path.write_text(f"data: {{kind: synthetic}}\nmodel: {section}\n")
    with pytest.raises(AsaSnnError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: section [model] is {found}")
    assert "expected a table of keys" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("date.yaml", "data: {root: 2020-01-01}\nmodel: {network: speck_net}\n", "key 'data.root' has value"),
        ("set.yaml", "data: !!set {a, b}\nmodel: {network: speck_net}\n", "key 'data' has value"),
        ("key.yaml", "data: {1: 2}\nmodel: {network: speck_net}\n", "key 1 in 'data' has type int"),
        (
            "date.toml",
            "[data]\nroot = 1979-05-27\n[model]\nnetwork = 'speck_net'\n",
            "key 'data.root' has value",
        ),
        ("nested.yaml", "data: {x: " + "[" * 40 + "]" * 40 + "}\n", "nested more than 32 levels deep"),
    ],
)
def test_values_json_cannot_hold_are_refused(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(AsaSnnError) as info:
        load_config(path)
    assert str(path) in str(info.value) and fragment in str(info.value) and "\n" not in str(info.value)


NUMERIC_CASES = [
    ("optim.lr=inf", "'optim.lr' is inf", "0 < value <= 10"),
    ("optim.lr=nan", "'optim.lr' is nan", "finite number"),
    ("optim.lr=-0.001", "'optim.lr' is -0.001", "0 < value <= 10"),
    ("optim.lr=0", "'optim.lr' is 0.0", "0 < value"),
    ("optim.lr=11", "'optim.lr' is 11.0", "value <= 10"),
    ("optim.lr_min=nan", "'optim.lr_min' is nan", "0 <= value <= 10"),
    ("optim.lr_min=-1e-6", "'optim.lr_min' is -1e-06", "0 <= value"),
    ("optim.lr_min=0.5", "'optim.lr_min' is 0.5, above 'optim.lr' = 0.01", "lr_min <= lr"),
    ("optim.weight_decay=-0.1", "'optim.weight_decay' is -0.1", "0 <= value <= 1"),
    ("optim.weight_decay=inf", "'optim.weight_decay' is inf", "0 <= value <= 1"),
    ("train.seed=-1", "'train.seed' is -1", "0 <= value <= 4294967295"),
    ("train.seed=4294967296", "'train.seed' is 4294967296", "value <= 4294967295"),
    (
        "train.epochs=99999999999999999999",
        "'train.epochs' is 99999999999999999999",
        "a sane upper bound of 100000",
    ),
    ("train.epochs=0", "'train.epochs' is 0", "1 <= value"),
    ("train.batch_size=0", "'train.batch_size' is 0", "1 <= value <= 65536"),
    ("train.batch_size=1000000", "'train.batch_size' is 1000000", "value <= 65536"),
    ("train.eval_windows=0", "'train.eval_windows' is 0", "1 <= value <= 1000"),
    ("data.val_fraction=1.0", "'data.val_fraction' is 1.0", "0 <= value < 1"),
    ("data.val_fraction=-0.1", "'data.val_fraction' is -0.1", "0 <= value < 1"),
    ("data.val_fraction=nan", "'data.val_fraction' is nan", "0 <= value < 1"),
    ("data.test_fraction=1.5", "'data.test_fraction' is 1.5", "0 <= value < 1"),
    ("data.n_steps=0", "'data.n_steps' is 0", "1 <= value <= 10000"),
    ("data.dt_us=0", "'data.dt_us' is 0", "1 <= value <= 3600000000"),
    ("data.dt_us=-5", "'data.dt_us' is -5", "1 <= value"),
    ("data.downsample=0", "'data.downsample' is 0", "1 <= value <= 4096"),
    ("data.crop=[0, 16]", "'data.crop[0]' is 0", "1 <= value <= 4096"),
    ("data.crop=[16, 5000]", "'data.crop[1]' is 5000", "value <= 4096"),
    ("data.max_samples=0", "'data.max_samples' is 0", "1 <= value"),
    ("data.n_samples=0", "'data.n_samples' is 0", "1 <= value <= 1000000"),
    ("data.n_samples=10000000000", "'data.n_samples' is 10000000000", "value <= 1000000"),
    ("data.n_test_samples=-3", "'data.n_test_samples' is -3", "1 <= value"),
    ("data.n_classes=1", "'data.n_classes' is 1", "2 <= value <= 7"),
    ("data.n_classes=8", "'data.n_classes' is 8", "2 <= value <= 7"),
    ("data.sensor_size=[16, 3]", "'data.sensor_size[1]' is 3", "4 <= value <= 4096"),
    ("data.sensor_size=[100000, 16]", "'data.sensor_size[0]' is 100000", "value <= 4096"),
    ("data.duration_us=0", "'data.duration_us' is 0", "1 <= value <= 3600000000"),
    ("data.data_seed=-2", "'data.data_seed' is -2", "0 <= value <= 4294967295"),
    ("model.input_shape=[2, 0, 16]", "'model.input_shape[1]' is 0", "1 <= value <= 4096"),
    ("model.num_classes=0", "'model.num_classes' is 0", "1 <= value <= 100000"),
    ("model.timesteps=0", "'model.timesteps' is 0", "1 <= value"),
    ("model.neuron_options.v_th=nan", "'model.neuron_options.v_th' is nan", "expected a number"),
    (
        "model.network_options.channels=[4, nan]",
        "'model.network_options.channels[1]' is nan",
        "expected a number",
    ),
    ("optim.lr=1" + "0" * 400, "'optim.lr' is an integer of 401 digits", "too large for a float"),
    ("train.epochs=" + "9" * 400, "'train.epochs' is an integer of 400 digits", "1 <= value <= 100000"),
    ("train.seed=-" + "9" * 400, "'train.seed' is an integer of 400 digits", "0 <= value <= 4294967295"),
]


@pytest.mark.parametrize(
    ("override", "found", "expected"), NUMERIC_CASES, ids=[case[0][:40] for case in NUMERIC_CASES]
)
def test_numeric_keys_finite_and_in_range(tiny_config_file, override, found, expected):
    with pytest.raises(InputFormatError) as info:
        load_config(tiny_config_file, [override])
    message = str(info.value)
    assert message.startswith(f"{tiny_config_file}: key ")
    assert found in message and expected in message and "\n" not in message


@pytest.mark.parametrize(
    "overrides",
    [
        ["optim.lr=10", "optim.lr_min=10"],
        ["optim.lr_min=0", "optim.weight_decay=1"],
        ["train.seed=0", "data.data_seed=4294967295", "train.epochs=100000", "train.batch_size=65536"],
        ["data.val_fraction=0", "data.test_fraction=0.99", "data.crop=[4096, 1]", "data.n_classes=2"],
        ["model.neuron_options.min_v=-inf"],  # infinity can be meant in options (no IAF floor)
    ],
)
def test_numeric_bounds_are_inclusive_where_stated(tiny_config_file, overrides):
    load_config(tiny_config_file, overrides)


def test_every_numeric_field_has_bounds():
    from dataclasses import fields

    from asa_snn.train.config import NUMERIC_BOUNDS, SECTIONS

    def numeric(hint) -> bool:
        return hint in (int, float) or any(numeric(arg) for arg in typing.get_args(hint))

    expected = {
        f"{section}.{field.name}"
        for section, cls in SECTIONS.items()
        for field in fields(cls)
        if numeric(typing.get_type_hints(cls)[field.name])
    }
    assert expected == set(NUMERIC_BOUNDS)


def test_huge_yaml_integer_is_compared_exactly_not_as_a_float(tmp_path):
    """A 400-digit integer overflows float(); the bounds compare it as an int and say how long it is."""
    path = tmp_path / "huge.yaml"
    path.write_text("model: {network: speck_net}\ntrain: {epochs: " + "9" * 400 + "}\n")
    with pytest.raises(InputFormatError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: key 'train.epochs' is an integer of 400 digits")
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("digits.yaml", "model: {network: speck_net}\ntrain: {epochs: " + "9" * 5000 + "}\n"),
        ("digits.toml", "[model]\nnetwork = 'speck_net'\n[train]\nepochs = " + "9" * 5000 + "\n"),
    ],
)
def test_integer_literal_past_pythons_digit_limit_is_refused(tmp_path, name, text):
    """Both parsers call int() on the literal, which refuses more than sys.get_int_max_str_digits()."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputFormatError, match=r"an integer literal has more than \d+ digits") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: refused")


@pytest.mark.parametrize(
    ("overrides", "limit"),
    [
        (["model.network_options.channels=[1000000, 8]"], f"{MAX_STEP_ACTIVATIONS:,} (MAX_STEP_ACTIVATIONS)"),
        (["model.network_options.channels=[8, 200000, 200000]"], f"{MAX_PARAMETERS:,} (MAX_PARAMETERS)"),
    ],
)
def test_model_size_is_bounded_before_the_model_is_built(tiny_config_file, overrides, limit):
    """A million channels once asked PyTorch for 32 GB in the first forward pass; the config now
    counts parameters and layer outputs on the meta device (nothing allocated) and refuses past the
    limits."""
    with pytest.raises(InputFormatError) as info:
        load_config(tiny_config_file, overrides)
    message = str(info.value)
    assert message.startswith(f"{tiny_config_file}: model.network_options ")
    assert f"expected at most {limit}" in message
    assert "model.input_shape" in message and "\n" not in message


def test_model_within_the_bound_reports_nothing(tiny_config_file):
    from asa_snn.models.registry import step_activations

    config = load_config(tiny_config_file)
    assert 0 < step_activations(config.model) <= MAX_STEP_ACTIVATIONS


def test_bad_network_options_are_named_with_the_file_at_load(tiny_config_file):
    with pytest.raises(AsaSnnError) as info:
        load_config(tiny_config_file, ["model.network_options.depth=3"])
    assert str(info.value).startswith(f"{tiny_config_file}: network 'speck_net': bad network option(s)")
