"""The embedded synthetic DVS dataset: determinism, shapes, masks and the share of background."""

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from asa_snn.data.frames import to_frames
from asa_snn.data.synthetic import (
    MOTIONS,
    SlidingSquare,
    SyntheticDVS,
    SyntheticDVSConfig,
    generate_sample,
    object_events,
)
from asa_snn.errors import InputFormatError

CONFIG = SyntheticDVSConfig()
QUIET = replace(CONFIG, noise_rate_hz=0.0, n_hot_pixels=0)


def test_same_seed_same_events_and_lazy_regeneration():
    a, b = SyntheticDVS(8, CONFIG), SyntheticDVS(8, CONFIG)
    b.recording(7)  # generating out of order must not change sample 3
    for i in (3, 7):
        np.testing.assert_array_equal(a.recording(i).events, b.recording(i).events)
    np.testing.assert_array_equal(a.recording(3).events, generate_sample(CONFIG, "train", 3).events)


def test_seeds_and_splits_differ():
    base = SyntheticDVS(4, CONFIG).recording(0).events
    other_seed = SyntheticDVS(4, replace(CONFIG, seed=1)).recording(0).events
    other_split = SyntheticDVS(4, CONFIG, split="test").recording(0).events
    for other in (other_seed, other_split):
        assert len(other) != len(base) or not np.array_equal(other, base)


def test_labels_cover_all_classes_and_names():
    ds = SyntheticDVS(21, CONFIG)
    assert ds.classes == tuple(m.name for m in MOTIONS) and len(ds.classes) == 7
    np.testing.assert_array_equal(np.bincount(ds.labels), [3] * 7)
    assert [ds[i][1] for i in range(7)] == list(range(7))
    assert SyntheticDVS(4, replace(CONFIG, n_classes=3)).classes == (
        "square_left",
        "square_right",
        "square_up",
    )


def test_frames_shape_dtype_and_counts():
    ds = SyntheticDVS(3, CONFIG)
    frames, label = ds[1]
    assert isinstance(frames, torch.Tensor) and frames.dtype == torch.float32
    assert frames.shape == (16, 2, 32, 32)
    assert isinstance(label, int)
    stream = ds.recording(1)
    assert frames.sum().item() == len(stream)  # every event (0 <= t < 320 ms) lands in one of 16 x 20 ms
    np.testing.assert_array_equal(frames.numpy(), to_frames(stream.events, (32, 32, 2), 20_000, 16, 0))


def test_events_within_sensor_and_duration():
    ds = SyntheticDVS(14, replace(CONFIG, sensor_size=(20, 24, 2)))
    for i in range(len(ds)):
        ev = ds.recording(i).events  # EventStream checks x < W, y < H, p < P and sorted t
        assert ev["t"].min() >= 0 and ev["t"].max() < CONFIG.duration_us
        assert ev["x"].max() < 20 and ev["y"].max() < 24


def test_polarity_leading_edge_on_trailing_edge_off():
    scene = SlidingSquare(start=(8.0, 15.5), shift=(16.0, 0.0), half_size=3.0)
    ev = object_events(scene, QUIET, np.random.default_rng(0))
    on, off = ev[ev["p"] == 1], ev[ev["p"] == 0]
    assert len(on) > 100 and len(off) > 100
    assert on["x"].mean() > off["x"].mean() + 4  # moving right: ON ahead, OFF behind
    assert set(np.unique(ev["y"])) <= set(range(12, 20))


def test_foreground_masks_hold_object_events_not_noise():
    quiet = SyntheticDVS(14, QUIET)
    noisy = SyntheticDVS(14, CONFIG)
    dt = CONFIG.frame_dt_us
    inside_noise, mask_area = [], []
    for i in range(len(quiet)):
        masks = quiet.foreground_masks(i)
        assert masks.shape == (16, 32, 32) and masks.dtype == bool
        ev = quiet.recording(i).events
        assert masks[ev["t"] // dt, ev["y"], ev["x"]].mean() > 0.9
        np.testing.assert_array_equal(masks, noisy.foreground_masks(i))
        noise = noisy.sample(i).background_events
        inside_noise.append(masks[noise["t"] // dt, noise["y"], noise["x"]].mean())
        mask_area.append(masks.mean())
    assert np.mean(inside_noise) < 0.3
    assert np.mean(inside_noise) == pytest.approx(np.mean(mask_area), abs=0.05)


def test_foreground_masks_other_binning_and_dilation():
    ds = SyntheticDVS(2, QUIET)
    coarse = ds.foreground_masks(0, dt_us=40_000, n_steps=10)
    assert coarse.shape == (10, 32, 32)
    assert not coarse[8:].any()  # windows after the 320 ms recording are empty
    fine = ds.foreground_masks(0, dt_us=20_000, n_steps=16)
    np.testing.assert_array_equal(coarse[:8], fine[0::2] | fine[1::2])
    tight = ds.foreground_masks(0, dilate_px=0)
    assert tight.sum() < fine.sum() and not (tight & ~fine).any()


def test_background_fraction_in_range():
    ds = SyntheticDVS(70, CONFIG)
    n_object = sum(len(ds.sample(i).object_events) for i in range(len(ds)))
    n_background = sum(len(ds.sample(i).background_events) for i in range(len(ds)))
    assert 0.2 <= n_background / (n_object + n_background) <= 0.4
    quiet = SyntheticDVS(7, QUIET)
    assert all(len(quiet.sample(i).background_events) == 0 for i in range(7))


def test_hot_pixels_fire_often():
    cfg = replace(CONFIG, noise_rate_hz=0.0, n_hot_pixels=2, hot_pixel_rate_hz=500.0)
    bg = generate_sample(cfg, "val", 0).background_events
    pixels, counts = np.unique(bg["x"].astype(int) * 100 + bg["y"], return_counts=True)
    assert len(pixels) == 2 and counts.min() > 100  # mean 160 per pixel in 320 ms


def test_config_and_dataset_validation():
    with pytest.raises(InputFormatError, match="n_classes"):
        SyntheticDVSConfig(n_classes=9)
    with pytest.raises(InputFormatError, match="sensor_size"):
        SyntheticDVSConfig(sensor_size=(32, 32, 1))
    with pytest.raises(InputFormatError, match="noise_rate_hz"):
        SyntheticDVSConfig(noise_rate_hz=-1.0)
    with pytest.raises(InputFormatError, match=r"split.*'dev'"):
        SyntheticDVS(4, CONFIG, split="dev")
    with pytest.raises(IndexError, match="index 4"):
        SyntheticDVS(4, CONFIG)[4]


def test_generation_time_for_200_samples():
    start = time.perf_counter()
    ds = SyntheticDVS(200, CONFIG)
    total_counts = sum(ds[i][0].sum().item() for i in range(len(ds)))
    elapsed = time.perf_counter() - start
    assert total_counts == sum(len(ds.recording(i)) for i in range(len(ds)))
    print(f"\ngenerated and binned 200 synthetic samples (32x32, T=16) in {elapsed:.2f} s")
