"""lava-dl netx HDF5 export: layout, units, pool folding, rejections, and the validating reader."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from asa_snn.chips.loihi.netx_export import (
    fold_pool_into_conv,
    fold_pool_into_dense,
    netx_bytes,
    read_netx,
    to_netx_layers,
    write_netx,
)
from asa_snn.chips.loihi.simulator import LoihiSimulator, simulate_netx, with_drain
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, NeuronSpec
from asa_snn.errors import AsaSnnError, InputFormatError


def cuba(threshold):
    return NeuronSpec("cuba", threshold=threshold, reset="zero", du=0.25, dv=0.125)


def conv_net(quantized=True, pool=False):
    rng = np.random.default_rng(0)
    scale = 1 if quantized else 1 / 64
    conv = Layer(
        "conv",
        "conv2d",
        {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]},
        (4, 4, 4),
        {"weight": rng.integers(-8, 9, (4, 2, 3, 3)) * scale},
        cuba(20 * scale),
    )
    layers = [conv]
    if pool:
        layers.append(Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (4, 2, 2)))
    flat_size = 16 if pool else 64
    layers += [
        Layer("flat", "flatten", {}, (flat_size,)),
        Layer(
            "fc1",
            "linear",
            {},
            (8,),
            {"weight": rng.integers(-8, 9, (8, flat_size)) * scale, "bias": np.arange(8) * scale},
            cuba(30 * scale),
        ),
        Layer("fc2", "linear", {}, (3,), {"weight": rng.integers(-8, 9, (3, 8)) * scale}, cuba(10 * scale)),
    ]
    return FoldedGraph(layers, InputSpec((2, 8, 8), (8, 8, 2)), 3, "loihi", quantized)


def test_layout_matches_netx(tmp_path):
    graph = conv_net()
    path = write_netx(graph, tmp_path / "net.net")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.net"]  # no temp file left
    with h5py.File(path) as f:
        assert sorted(f["layer"].keys()) == ["0", "1", "2", "3", "4"]
        types = [f[f"layer/{i}/type"][0] for i in range(5)]
        assert types == [b"input", b"conv", b"flatten", b"dense", b"dense"]
        assert f["layer/1/type"].dtype.kind == "S" and f["layer/1/neuron/type"][0] == b"CUBA"
        assert f["layer/0/shape"][()].tolist() == [2, 8, 8]
        assert f["layer/1/shape"][()].tolist() == [4, 4, 4]
        assert f["layer/1/weight"].dtype == np.float32
        assert np.array_equal(f["layer/1/weight"][()], graph.layers[0].tensors["weight"])
        assert f["layer/1/stride"][()].tolist() == [2, 2] and f["layer/1/padding"][()].tolist() == [1, 1]
        assert f["layer/1/dilation"][()].tolist() == [1, 1] and f["layer/1/groups"][()] == 1
        assert f["layer/3/weight"].shape == (8, 64) and f["layer/3/bias"][()].tolist() == list(range(8))
        neuron = f["layer/3/neuron"]
        assert (neuron["iDecay"][()], neuron["vDecay"][()], neuron["vThMant"][()]) == (1024, 512, 30)
        relay = f["layer/0/neuron"]
        assert (relay["iDecay"][()], relay["vDecay"][()], relay["vThMant"][()]) == (4096, 0, 0)


def test_float_graph_is_scaled_by_64(tmp_path):
    quantized, floating = to_netx_layers(conv_net(True)), to_netx_layers(conv_net(False))
    for a, b in zip(quantized, floating, strict=True):
        assert (a.weight is None and b.weight is None) or np.array_equal(a.weight, b.weight)
        assert a.neuron == b.neuron


def test_reader_round_trip_simulates_identically(tmp_path):
    graph = conv_net()
    summary = read_netx(write_netx(graph, tmp_path / "net.net"))
    assert [layer.kind for layer in summary.layers] == ["input", "conv", "flatten", "dense", "dense"]
    assert "conv" in summary.table() and "4x2x3x3" in summary.table()
    frames = np.random.default_rng(2).integers(0, 2, (2, 12, 2, 8, 8))
    direct = LoihiSimulator().run(graph, frames)
    from_file = simulate_netx(summary.layers, with_drain(frames, summary.layers))
    assert direct.outputs.sum() > 0
    assert np.array_equal(direct.outputs, from_file.outputs)
    assert np.array_equal(direct.spike_counts["conv"], from_file.spike_counts["layer/1"])


@pytest.mark.parametrize(
    ("group", "field"), [("layer/1/neuron", "vThMant"), ("layer/3", "weight"), ("layer/1", "stride")]
)
def test_reader_names_missing_field(tmp_path, group, field):
    path = write_netx(conv_net(), tmp_path / "net.net")
    with h5py.File(path, "a") as f:
        del f[group][field]
    with pytest.raises(InputFormatError, match=f"{group}.*'{field}'"):
        read_netx(path)


def test_reader_rejects_gaps_and_pool_layers(tmp_path):
    path = write_netx(conv_net(), tmp_path / "net.net")
    with h5py.File(path, "a") as f:
        f["layer"].move("4", "7")
    with pytest.raises(InputFormatError, match="contiguous"):
        read_netx(path)
    with h5py.File(path, "a") as f:
        f["layer"].move("7", "4")
        del f["layer/2/type"]
        f["layer/2"].create_dataset("type", data=np.array([b"pool"], dtype="S10"))
    with pytest.raises(InputFormatError, match=r"layer/2.*'pool'"):
        read_netx(path)
    (tmp_path / "junk.net").write_bytes(b"not hdf5")
    with pytest.raises(InputFormatError, match=r"junk\.net"):
        read_netx(tmp_path / "junk.net")


def test_pool_then_conv_fold_is_exact():
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.integers(0, 2, (1, 2, 8, 8)), dtype=torch.float64)
    w = rng.integers(-5, 6, (3, 2, 3, 3))
    pooled = torch.nn.functional.avg_pool2d(x, 2) * 4
    expected = torch.nn.functional.conv2d(pooled, torch.tensor(w, dtype=torch.float64), stride=1, padding=1)
    folded = torch.nn.functional.conv2d(
        x, torch.tensor(fold_pool_into_conv(w, (2, 2)), dtype=torch.float64), stride=2, padding=2
    )
    assert torch.equal(expected, folded)


def test_pool_then_dense_fold_is_exact_and_drops_remainder():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, (2, 5, 5))
    w = rng.integers(-5, 6, (3, 2 * 2 * 2))
    pooled = x[:, :4, :4].reshape(2, 2, 2, 2, 2).sum(axis=(2, 4))
    assert np.array_equal(
        w @ pooled.reshape(-1), fold_pool_into_dense(w, (2, 2, 2), (2, 2), (2, 5, 5)) @ x.reshape(-1)
    )


def test_graph_with_pool_exports_as_folded_dense():
    layers = to_netx_layers(conv_net(pool=True))
    assert [layer.kind for layer in layers] == ["input", "conv", "flatten", "dense", "dense"]
    assert layers[2].shape == (64,) and layers[3].weight.shape == (8, 64)


def test_unfoldable_pool_is_rejected_with_layer_name():
    graph = conv_net()
    graph.input = InputSpec((2, 9, 9), (9, 9, 2))
    graph.layers.insert(0, Layer("pool0", "sumpool2d", {"kernel_size": [2, 2]}, (2, 4, 4)))
    graph.layers[1].output_shape = (4, 2, 2)
    with pytest.raises(AsaSnnError, match=r"pool0.*loihi_net"):
        to_netx_layers(graph)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda g: g.layers.insert(1, Layer("res", "add", {}, (4, 4, 4), inputs=("conv", "conv"))),
            "'res'.*residual",
        ),
        (
            lambda g: setattr(g.layers[0], "neuron", NeuronSpec("lif", 1.0, "zero", decay=0.5)),
            "'conv'.*'lif'",
        ),
        (
            lambda g: setattr(g.layers[0], "neuron", NeuronSpec("cuba", 1.0, "subtract", du=0.5, dv=0.5)),
            "'conv'.*subtract",
        ),
        (
            lambda g: g.layers[3].tensors.update(weight=g.layers[3].tensors["weight"] + 0.5),
            "'fc2'.*non-integer",
        ),
    ],
)
def test_rejects_what_netx_cannot_take(change, message):
    graph = conv_net()
    change(graph)
    with pytest.raises(AsaSnnError, match=message):
        to_netx_layers(graph)


def test_values_outside_what_netx_keeps_are_refused_naming_the_layer(tmp_path):
    # a float weight of 5 is written as round(64 x 5) = 320; lava-dl's loader clips mixed-sign weights
    # to [-256, 254], so the file would hold another network
    graph = conv_net(quantized=False)
    weight = graph.layers[-1].tensors["weight"].copy()
    weight[0, 0] = 5.0
    graph.layers[-1].tensors["weight"] = weight
    with pytest.raises(AsaSnnError, match=r"layer 'fc2': netx weight \(mixed sign\).*320.*\[-256, 254\]"):
        write_netx(graph, tmp_path / "net.net")
    assert list(tmp_path.iterdir()) == []
    weight[0, 0] = 254 / 64  # the largest mixed-sign weight the loader keeps
    write_netx(graph, tmp_path / "net.net")
    assert read_netx(tmp_path / "net.net").layers[-1].weight.max() == 254


def test_quantized_values_out_of_range_are_refused_too(tmp_path):
    graph = conv_net(quantized=True)
    graph.layers[-1].neuron = cuba(2**17)  # vThMant needs 18 bits
    with pytest.raises(AsaSnnError, match=r"layer 'fc2': netx vThMant.*re-run the quantization"):
        write_netx(graph, tmp_path / "net.net")
    graph = conv_net(quantized=True)
    graph.layers[2].tensors["bias"] = np.full(8, 5000.0)  # bias mantissa is 13 bits signed
    with pytest.raises(AsaSnnError, match=r"layer 'fc1': netx bias mantissa"):
        write_netx(graph, tmp_path / "net.net")


def test_the_file_is_built_in_memory_and_written_in_one_go(tmp_path):
    graph = conv_net()
    image = netx_bytes(graph)
    assert image[:8] == b"\x89HDF\r\n\x1a\n" and list(tmp_path.iterdir()) == []
    path = write_netx(graph, tmp_path / "net.net")
    assert read_netx(path).layers[1].kind == "conv" and len(path.read_bytes()) == len(image)


_FULL_DISK = """
import errno, resource, sys
from pathlib import Path
from asa_snn.chips.loihi.netx_export import write_netx
from asa_snn.convert.graph import load_graph
graph = load_graph(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
try:
    write_netx(graph, Path(sys.argv[2]))
except OSError as exc:
    print("refused", errno.errorcode[exc.errno])
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_full_disk_is_an_os_error_that_leaves_nothing_behind(tmp_path):
    """h5py 3.16 crashes the process in File.close() after HDF5's own writes fail (a full disk, a
    file size limit). HDF5 now writes only to memory; the one disk write is Python's, which raises
    OSError, removes its temporary file and leaves an older file at the path as it was."""
    from asa_snn.convert.graph import save_graph

    save_graph(conv_net(), tmp_path / "graph")
    out = tmp_path / "out"
    out.mkdir()
    (out / "net.net").write_bytes(b"previous")
    script = [sys.executable, "-c", _FULL_DISK, str(tmp_path / "graph"), str(out / "net.net")]
    result = subprocess.run(script, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "refused EFBIG"
    assert [p.name for p in out.iterdir()] == ["net.net"] and (out / "net.net").read_bytes() == b"previous"
