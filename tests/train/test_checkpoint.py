"""Checkpoint files: safetensors only, clear errors for wrong files and architectures, atomic writes."""

import pytest
import torch
from safetensors.torch import save_file

from asa_snn.errors import AsaSnnError
from asa_snn.models.registry import ModelSpec, build_model
from asa_snn.train.checkpoint import atomic_write, load_checkpoint, load_model, save_checkpoint

SPEC = ModelSpec(
    "speck_net", timesteps=4, input_shape=(2, 16, 16), num_classes=3, network_options={"channels": [4, 8]}
)


def _saved(path, spec=SPEC, epoch=1):
    torch.manual_seed(0)
    model = build_model(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.rand(4, 2, *spec.input_shape)).sum().backward()
    optimizer.step()
    save_checkpoint(path, model, spec, {"epoch": epoch}, optimizer)
    return model


def test_round_trip_restores_spec_state_and_outputs(tmp_path):
    model = _saved(tmp_path / "a.safetensors").eval()
    spec, state, metadata = load_checkpoint(tmp_path / "a.safetensors")
    assert spec == SPEC and metadata["epoch"] == 1 and metadata["version"] == 1
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    loaded, _ = load_model(tmp_path / "a.safetensors")
    x = torch.rand(4, 2, 2, 16, 16)
    assert torch.equal(loaded(x), model(x))


def test_other_architecture_is_refused_with_the_mismatch(tmp_path):
    _saved(tmp_path / "a.safetensors")
    other = ModelSpec(
        "speck_net", timesteps=4, input_shape=(2, 16, 16), num_classes=3, network_options={"channels": [4, 6]}
    )
    with pytest.raises(AsaSnnError) as info:
        load_model(tmp_path / "a.safetensors", spec=other)
    assert (
        "a.safetensors" in str(info.value)
        and "shape" in str(info.value)
        and "blocks.1.conv.weight" in str(info.value)
    )
    loihi = ModelSpec("loihi_net", timesteps=4, input_shape=(2, 16, 16), num_classes=3)
    with pytest.raises(AsaSnnError, match=r"missing"):
        load_model(tmp_path / "a.safetensors", spec=loihi)


def test_files_that_are_not_checkpoints_name_the_file(tmp_path):
    pickle_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pickle_file)
    with pytest.raises(AsaSnnError, match=r"model\.pt: not a checkpoint"):
        load_checkpoint(pickle_file)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(AsaSnnError, match=r"plain\.safetensors: not an asa-snn checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(AsaSnnError, match=r"does not exist"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_old_format_version_is_refused(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file(
        {"model.x": torch.zeros(1)}, path, {"asa_snn": '{"format": "asa-snn-checkpoint", "version": 0}'}
    )
    with pytest.raises(AsaSnnError, match=r"old\.safetensors: checkpoint format version 0"):
        load_checkpoint(path)


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.safetensors"
    _saved(path, epoch=1)
    before = path.read_bytes()

    def crash_after_temp_exists(tensors, temp, metadata):
        save_file(tensors, temp, metadata)
        assert temp.is_file()
        raise KeyboardInterrupt

    model = build_model(SPEC)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, SPEC, {"epoch": 2}, write=crash_after_temp_exists)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
    with pytest.raises(OSError):
        atomic_write(
            tmp_path / "x.bin",
            lambda temp: (temp.write_bytes(b"half"), (_ for _ in ()).throw(OSError("disk full"))),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_reads_racing_a_writer_see_one_whole_checkpoint(tmp_path):
    """A reader in a loop while another thread replaces the file: every read is one complete
    checkpoint, its tensors and metadata from the same write (issue 13: a read raised once in about
    1,800 while training replaced last.safetensors)."""
    import threading
    import time

    from asa_snn.train.checkpoint import read_checkpoint

    path = tmp_path / "last.safetensors"
    model = torch.nn.Linear(64, 64)
    spec = SPEC

    def save(epoch):
        with torch.no_grad():
            model.weight.fill_(epoch)
            model.bias.fill_(epoch)
        save_checkpoint(path, model, spec, {"epoch": epoch, "padding": "x" * (epoch % 7) * 1000})

    save(0)
    stop = threading.Event()
    written = {"n": 0}

    def writer():
        while not stop.is_set():
            written["n"] += 1
            save(written["n"])

    thread = threading.Thread(target=writer)
    thread.start()
    epochs, reads, began = set(), 0, time.monotonic()
    try:
        while (written["n"] < 40 or reads < 400) and time.monotonic() - began < 60:
            tensors, metadata = read_checkpoint(path)
            epoch = metadata["epoch"]
            assert torch.all(tensors["model.weight"] == epoch) and torch.all(tensors["model.bias"] == epoch)
            epochs.add(epoch)
            reads += 1
    finally:
        stop.set()
        thread.join()
    assert len(epochs) > 10  # the reads really raced the writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
