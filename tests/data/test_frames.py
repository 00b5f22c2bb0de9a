"""Frame building, augmentation and transforms on tiny hand-made recordings."""

import numpy as np
import pytest

from asa_snn.data.events import EventStream, make_events
from asa_snn.data.frames import (
    downsample,
    drop_area,
    drop_random_events,
    drop_time_interval,
    equal_count_sizes,
    event_drop,
    majority_vote,
    random_time_crop,
    to_frames,
    to_frames_equal_count,
    window_starts,
)
from asa_snn.data.model_input import InputSpec, window_frames
from asa_snn.data.transforms import (
    Compose,
    Downsample,
    EventDrop,
    RandomTimeCrop,
    ToFrames,
    ToFramesEqualCount,
)
from asa_snn.errors import AsaSnnError, InputFormatError

SENSOR = (4, 3, 2)


def events(*rows):
    """rows of (t, x, y, p)."""
    t, x, y, p = (np.array(column) for column in zip(*rows, strict=True))
    return make_events(t, x, y, p)


def grid_events(n=200, sensor=(8, 8, 2), seed=0, span=10_000):
    rng = np.random.default_rng(seed)
    return make_events(
        np.sort(rng.integers(0, span, n)),
        rng.integers(0, sensor[0], n),
        rng.integers(0, sensor[1], n),
        rng.integers(0, sensor[2], n),
    )


def test_to_frames_counts_per_polarity_and_window():
    ev = events(
        (100, 0, 0, 1),
        (105, 0, 0, 1),  # same pixel, same window: count 2
        (109, 3, 2, 0),  # last microsecond of window 0
        (110, 3, 2, 0),  # window edge: belongs to window 1
        (125, 1, 1, 1),  # window 2
        (130, 2, 2, 1),  # t0 + 3*dt: past the 3 windows, ignored
    )
    frames = to_frames(ev, SENSOR, dt_us=10, n_steps=3)
    assert frames.shape == (3, 2, 3, 4)
    assert frames.dtype == np.float32
    expected = np.zeros((3, 2, 3, 4), dtype=np.float32)
    expected[0, 1, 0, 0] = 2
    expected[0, 0, 2, 3] = 1
    expected[1, 0, 2, 3] = 1
    expected[2, 1, 1, 1] = 1
    np.testing.assert_array_equal(frames, expected)


def test_to_frames_explicit_start_ignores_earlier_events():
    ev = events((5, 0, 0, 0), (20, 1, 0, 1), (39, 1, 0, 1))
    frames = to_frames(ev, SENSOR, dt_us=10, n_steps=2, t_start_us=20)
    assert frames.sum() == 2
    assert frames[0, 1, 0, 1] == 1 and frames[1, 1, 0, 1] == 1


def test_to_frames_empty_input_gives_zeros():
    frames = to_frames(make_events([], [], [], []), SENSOR, 10, 4)
    np.testing.assert_array_equal(frames, np.zeros((4, 2, 3, 4), dtype=np.float32))


@pytest.mark.parametrize(("kwargs", "name"), [({"dt_us": 0}, "dt_us"), ({"n_steps": 0}, "n_steps")])
def test_to_frames_rejects_bad_parameters(kwargs, name):
    args = {"dt_us": 10, "n_steps": 2} | kwargs
    with pytest.raises(InputFormatError, match=f"{name}.*got 0"):
        to_frames(events((0, 0, 0, 0)), SENSOR, **args)


def test_to_frames_rejects_events_outside_sensor():
    with pytest.raises(InputFormatError, match="x=4"):
        to_frames(events((0, 4, 0, 0)), SENSOR, 10, 1)


def test_equal_count_sizes_put_remainder_first():
    np.testing.assert_array_equal(equal_count_sizes(10, 3), [4, 3, 3])
    np.testing.assert_array_equal(equal_count_sizes(11, 4), [3, 3, 3, 2])
    np.testing.assert_array_equal(equal_count_sizes(2, 4), [1, 1, 0, 0])


def test_equal_count_frames_split_in_time_order():
    ev = events(*[(t, t % 4, 0, 1) for t in range(7)])
    frames = to_frames_equal_count(ev, SENSOR, n_steps=3)
    np.testing.assert_array_equal(frames.sum(axis=(1, 2, 3)), [3, 2, 2])
    # slice 0 holds events t=0,1,2 at x=0,1,2; slice 1 holds t=3,4 at x=3,0
    np.testing.assert_array_equal(frames[0, 1, 0], [1, 1, 1, 0])
    np.testing.assert_array_equal(frames[1, 1, 0], [1, 0, 0, 1])


def test_downsample_bins_coordinates_and_keeps_counts():
    ev = grid_events(300, sensor=(10, 7, 2))
    small, sensor = downsample(ev, (10, 7, 2), 4)
    assert sensor == (3, 2, 2)
    np.testing.assert_array_equal(small["x"], ev["x"] // 4)
    np.testing.assert_array_equal(small["y"], ev["y"] // 4)
    full = to_frames(ev, (10, 7, 2), 1000, 10)
    binned = to_frames(small, sensor, 1000, 10)
    assert binned.sum() == full.sum() == 300
    assert binned[:, :, 0, 0].sum() == full[:, :, 0:4, 0:4].sum()
    assert binned[:, :, 1, 2].sum() == full[:, :, 4:7, 8:10].sum()


def test_downsample_rejects_factor_zero():
    with pytest.raises(InputFormatError, match="factor"):
        downsample(grid_events(), (8, 8, 2), 0)


def test_random_time_crop_window_and_short_recording():
    ev = grid_events(500, span=100_000)
    rng = np.random.default_rng(1)
    for _ in range(20):
        crop = random_time_crop(ev, 10_000, rng)
        assert crop["t"][-1] - crop["t"][0] < 10_000
        lo = np.searchsorted(ev["t"], crop["t"][0])
        np.testing.assert_array_equal(crop, ev[lo : lo + len(crop)])
    whole = random_time_crop(ev, 200_000, rng)
    np.testing.assert_array_equal(whole, ev)


def test_drop_random_events_removes_exact_ratio():
    ev = grid_events(200)
    kept = drop_random_events(ev, 0.25, np.random.default_rng(0))
    assert len(kept) == 150
    assert np.all(np.diff(kept["t"]) >= 0)


def test_drop_time_interval_removes_one_interval():
    ev = make_events(np.arange(1001) * 10, np.zeros(1001), np.zeros(1001), np.zeros(1001))
    kept = drop_time_interval(ev, 0.3, np.random.default_rng(0))
    removed = np.setdiff1d(ev["t"], kept["t"])
    assert removed.max() - removed.min() < 3000
    assert len(removed) == 300  # events every 10 us over a 3000 us gap
    assert np.all(np.diff(removed) == 10)


def test_drop_area_removes_one_box():
    sensor = (8, 8, 2)
    xs, ys = np.meshgrid(np.arange(8), np.arange(8))
    ev = make_events(np.arange(64), xs.ravel(), ys.ravel(), np.zeros(64))
    kept = drop_area(ev, sensor, 0.25, np.random.default_rng(3))
    assert len(kept) == 64 - 16  # a 4 x 4 box
    gone = np.setdiff1d(ev["t"], kept["t"])
    assert np.ptp(ev["x"][gone]) == 3 and np.ptp(ev["y"][gone]) == 3


def test_event_drop_is_deterministic_and_uses_every_mode():
    ev = grid_events(400, sensor=(8, 8, 2), span=100_000)
    a = [event_drop(ev, (8, 8, 2), np.random.default_rng(s), 0.5, 0.5, 0.5) for s in range(40)]
    b = [event_drop(ev, (8, 8, 2), np.random.default_rng(s), 0.5, 0.5, 0.5) for s in range(40)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    sizes = {len(x) for x in a}
    assert 400 in sizes and 200 in sizes  # the identity and the random-drop modes
    assert len(sizes) > 3  # time and area modes drop data-dependent amounts


def test_event_drop_random_ratios_are_drawn_per_sample_below_the_maximum():
    ev = grid_events(400, sensor=(8, 8, 2), span=100_000)
    drawn = [event_drop(ev, (8, 8, 2), np.random.default_rng(s), 0.5, 0.0, 0.0, True) for s in range(60)]
    again = [event_drop(ev, (8, 8, 2), np.random.default_rng(s), 0.5, 0.0, 0.0, True) for s in range(60)]
    for x, y in zip(drawn, again, strict=True):
        np.testing.assert_array_equal(x, y)
    sizes = {len(x) for x in drawn}
    assert min(sizes) >= 200 and 400 in sizes  # at most the maximum ratio 0.5 of the events dropped
    assert len(sizes - {400}) > 5  # random-drop ratios differ between samples (fixed: always 200)
    fixed = {len(event_drop(ev, (8, 8, 2), np.random.default_rng(s), 0.5, 0.0, 0.0)) for s in range(60)}
    assert fixed == {400, 200}
    stream = EventStream(ev, (8, 8, 2))
    drop = EventDrop(seed=3, event_ratio=0.9, time_ratio=0.9, area_ratio=0.9, random_ratios=True)
    expected = event_drop(ev, (8, 8, 2), np.random.default_rng(3), 0.9, 0.9, 0.9, True)
    np.testing.assert_array_equal(drop(stream).events, expected)


def test_event_drop_rejects_ratio_outside_unit_interval():
    with pytest.raises(InputFormatError, match=r"area_ratio.*1\.5"):
        event_drop(grid_events(), (8, 8, 2), np.random.default_rng(0), area_ratio=1.5)


@pytest.mark.parametrize(
    ("duration", "window", "n", "expected"),
    [
        (1000, 100, 10, [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]),
        (1000, 100, 4, [0, 300, 600, 900]),
        (100, 30, 3, [0, 35, 70]),
        (10, 3, 4, [0, 2, 4, 7]),
        (50, 100, 3, [0, 0, 0]),
        (500, 100, 1, [0]),
    ],
)
def test_window_starts(duration, window, n, expected):
    starts = window_starts(duration, window, n)
    assert starts.dtype == np.int64
    np.testing.assert_array_equal(starts, expected)


def test_majority_vote_needs_more_than_half():
    assert majority_vote(np.array([1, 1, 0]), 1)
    assert not majority_vote(np.array([1, 1, 0, 0]), 1)  # exactly half
    assert majority_vote(np.array([2, 2, 2, 0, 1]), 2)
    assert not majority_vote(np.array([0, 1, 2, 3]), 0)
    with pytest.raises(InputFormatError, match="window_predictions"):
        majority_vote(np.array([]), 0)


def test_window_frames_match_single_windows():
    ev = grid_events(300, span=10_000)
    spec = InputSpec((2, 8, 8), (8, 8, 2), dt_us=500, n_steps=4)
    out = window_frames(spec, EventStream(ev, (8, 8, 2)), n_windows=3)
    assert out.shape == (3, 4, 2, 8, 8)
    span = int(ev["t"][-1] - ev["t"][0]) + 1
    for k, start in enumerate(window_starts(span, 2000, 3)):
        np.testing.assert_array_equal(out[k], to_frames(ev, (8, 8, 2), 500, 4, int(ev["t"][0] + start)))
    assert out[2].sum() == np.count_nonzero(ev["t"] > ev["t"][-1] - 2000)


def test_transforms_compose_and_carry_sensor_size():
    ev = grid_events(400, sensor=(8, 8, 2), span=10_000)
    stream = EventStream(ev, (8, 8, 2))
    pipeline = Compose((Downsample(2), ToFrames(dt_us=1000, n_steps=10, t_start_us=0)))
    frames = pipeline(stream)
    assert frames.shape == (10, 2, 4, 4)
    small, sensor = downsample(ev, (8, 8, 2), 2)
    np.testing.assert_array_equal(frames, to_frames(small, sensor, 1000, 10, 0))
    equal = Compose((Downsample(4), ToFramesEqualCount(4)))(stream)
    np.testing.assert_array_equal(equal.sum(axis=(1, 2, 3)), [100, 100, 100, 100])


def test_seeded_transforms_replay_and_match_functions():
    stream = EventStream(grid_events(400, span=100_000), (8, 8, 2))
    crop_a, crop_b = RandomTimeCrop(20_000, seed=5), RandomTimeCrop(20_000, seed=5)
    first = [crop_a(stream).events for _ in range(3)]
    for i, got in enumerate(crop_b(stream).events for _ in range(3)):
        np.testing.assert_array_equal(got, first[i])
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(first[0], random_time_crop(stream.events, 20_000, rng))
    drop = EventDrop(seed=7, event_ratio=0.5)
    expected = event_drop(stream.events, (8, 8, 2), np.random.default_rng(7), 0.5, 0.2, 0.2)
    np.testing.assert_array_equal(drop(stream).events, expected)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ToFrames(dt_us=-1, n_steps=2), "dt_us"),
        (lambda: ToFramesEqualCount(0), "n_steps"),
        (lambda: Downsample(0), "factor"),
        (lambda: RandomTimeCrop(0), "duration_us"),
        (lambda: EventDrop(time_ratio=-0.1), "time_ratio"),
    ],
)
def test_transforms_validate_parameters(make, field):
    with pytest.raises(AsaSnnError, match=field):
        make()
