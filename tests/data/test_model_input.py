"""The input spec is checked on construction: integer fields, and sizes bounded before any frame is
allocated (data/model_input.py)."""

import numpy as np
import pytest

from asa_snn.data.events import MAX_SENSOR_SIDE
from asa_snn.data.model_input import MAX_DT_US, MAX_FRAME_VALUES, MAX_STEPS, InputSpec
from asa_snn.errors import InputFormatError


def test_integer_fields_accept_numpy_integers_and_lists():
    spec = InputSpec([2, 8, 8], [np.int64(16), 16, 2], downsample=np.int32(2), n_steps=np.int64(4))
    assert spec.shape == (2, 8, 8) and spec.sensor_size == (16, 16, 2)
    assert type(spec.downsample) is int and type(spec.n_steps) is int


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shape": (2, 8.5, 8)}, r"input\.shape\[1\] is 8\.5 \(float\); expected an integer"),
        ({"shape": (2, 8.0, 8)}, r"input\.shape\[1\] is 8\.0"),
        ({"sensor_size": (8, 8, True)}, r"input\.sensor_size\[2\] is True"),
        ({"shape": "2x8x8"}, r"input\.shape is '2x8x8'; expected 3 integers"),
        ({"crop": (0, 0, 8)}, r"input\.crop is \(0, 0, 8\); expected 4 integers"),
        ({"n_steps": 4.0}, r"input\.n_steps is 4\.0"),
        ({"dt_us": 1000.5}, r"input\.dt_us is 1000\.5"),
        ({"downsample": "1"}, r"input\.downsample is '1'"),
        ({"polarity": 1}, r"input\.polarity is 1; expected a string"),
    ],
)
def test_non_integers_are_refused_not_rounded(fields, message):
    with pytest.raises(InputFormatError, match=message):
        InputSpec(**{"shape": (2, 8, 8), "sensor_size": (8, 8, 2), **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n_steps": 1_000_000_000}, rf"input\.n_steps is 1000000000; expected at most {MAX_STEPS}"),
        ({"n_steps": MAX_STEPS + 1}, r"input\.n_steps"),
        ({"dt_us": MAX_DT_US + 1}, r"input\.dt_us is 3600000001; expected at most 3600000000 \(one hour\)"),
        (
            {"downsample": MAX_SENSOR_SIDE + 1},
            r"input\.downsample is 4097; expected at most 4096 \(MAX_SENSOR_SIDE",
        ),
        (
            {"shape": (2, 100_000, 100_000), "sensor_size": (100_000, 100_000, 2)},
            r"input\.shape\[1\] is 100000",
        ),
        (
            {"shape": (2, 4096, 4096), "sensor_size": (4096, 4096, 2), "n_steps": 10},
            r"input\.n_steps x input\.shape = 10 x \[2, 4096, 4096\] is 335,544,320 values",
        ),
    ],
)
def test_sizes_are_bounded_before_any_frame_exists(fields, message):
    """n_steps = 1e9 once asked numpy for 954 GiB in frames_for; now the spec itself is refused."""
    with pytest.raises(InputFormatError, match=message) as info:
        InputSpec(**{"shape": (2, 8, 8), "sensor_size": (8, 8, 2), **fields})
    assert "\n" not in str(info.value)


def test_the_largest_frames_allowed_are_exactly_the_limit():
    side = 128
    steps = MAX_FRAME_VALUES // (2 * side * side)
    InputSpec((2, side, side), (side, side, 2), n_steps=steps)
    with pytest.raises(InputFormatError, match="MAX_FRAME_VALUES"):
        InputSpec((2, side, side), (side, side, 2), n_steps=steps + 1)
