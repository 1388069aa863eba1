"""Level-normalised windows of many series, against a plain loop."""

import numpy as np
import pytest

from rnnbptt.forecast.windows import make_windows, naive_scale


def _loop(y, origin, input_size, h, level_steps, scale):
    """One window by hand: the inputs before ``origin``, left-padded."""
    past = [y[t] if t >= 0 else np.nan for t in range(origin - input_size, origin)]
    future = [y[t] if t < len(y) else np.nan for t in range(origin, origin + h)]
    valid = [v for v in past[-level_steps:] if not np.isnan(v)]
    level = sum(valid) / len(valid)
    z = [0.0 if np.isnan(v) else (v - level) / scale for v in past]
    return z, [(v - level) / scale for v in future], level


def test_windows_equal_a_plain_loop_with_padding_and_two_series():
    rng = np.random.default_rng(0)
    series = [rng.normal(size=9) + 50, rng.normal(size=4) - 3]
    scales = np.array([naive_scale(s) for s in series])
    w = make_windows(series, input_size=5, h=2, level_steps=3, scales=scales)
    # every origin with both targets inside: 1..7 and 1..2
    assert w.series.tolist() == [0] * 7 + [1] * 2
    assert w.origin.tolist() == [1, 2, 3, 4, 5, 6, 7, 1, 2]
    for k, (i, o) in enumerate(zip(w.series, w.origin, strict=True)):
        z, target, level = _loop(series[i], o, 5, 2, 3, scales[i])
        np.testing.assert_allclose(w.inputs[k], z, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(w.targets[k], target, rtol=1e-14)
        assert w.level[k] == pytest.approx(level, rel=1e-14)
        assert w.mask[k].tolist() == [o - 5 + j >= 0 for j in range(5)]
    # back in the series' units: the targets are the values themselves
    np.testing.assert_allclose(w.denormalise(w.targets)[0], series[0][1:3], rtol=1e-14)


def test_a_level_shift_leaves_the_network_inputs_alike():
    y = np.sin(np.arange(30.0))
    shifted = y + 1000.0
    scales = np.array([naive_scale(y)] * 2)
    a, b = (make_windows([s], 8, 3, 8, scales[:1]) for s in (y, shifted))
    np.testing.assert_allclose(a.inputs, b.inputs, atol=1e-10)
    np.testing.assert_allclose(b.level - a.level, 1000.0, rtol=1e-12)


def test_windows_at_given_origins_forecast_past_the_end():
    y = np.arange(6.0)
    w = make_windows([y], 3, 2, 1, np.array([1.0]), origins=[[6]])
    np.testing.assert_array_equal(w.inputs, [[-2.0, -1.0, 0.0]])  # level = y[5]
    assert np.isnan(w.targets).all() and w.level.tolist() == [5.0]


def test_naive_scale_by_hand():
    assert naive_scale(np.array([1.0, 3.0, 2.0])) == pytest.approx(1.5)
    assert naive_scale(np.array([4.0, 4.0])) == 1.0  # constant: no change to scale by
    assert naive_scale(np.array([4.0])) == 1.0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"series": [np.arange(2.0)]}, ["series 'a'", "2 values", "h + 1 = 3"]),
        ({"level_steps": 4}, ["`level_steps`", "input_size=3"]),
        ({"origins": [[0]]}, ["origins of series 'a'", "1..6"]),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, words):
    args = {"series": [np.arange(6.0)], "input_size": 3, "h": 2, "level_steps": 2}
    args |= {"scales": np.ones(1), "ids": ["a"], "fn": "Forecaster.fit"} | kwargs
    with pytest.raises(ValueError) as info:
        make_windows(**args)
    for word in ["Forecaster.fit", *words]:
        assert word in str(info.value)
