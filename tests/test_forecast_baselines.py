"""M4's benchmark forecasts against hand computations and R's definitions."""

import numpy as np
import pytest

from rnnbptt.forecast import baselines


def test_naive_and_seasonal_naive_by_hand():
    x = np.arange(1.0, 8.0)  # 1 ... 7
    np.testing.assert_array_equal(baselines.naive(x, 3), [7, 7, 7])
    # the last season (5, 6, 7) repeated
    np.testing.assert_array_equal(baselines.seasonal_naive(x, 5, 3), [5, 6, 7, 5, 6])


def test_acf_is_rs_biased_estimate():
    # R: acf(1:4)$acf = 1, 0.25, -0.3, -0.45
    np.testing.assert_allclose(baselines.acf([1, 2, 3, 4], 3), [0.25, -0.3, -0.45])


def _periodic(pattern, periods, level=10.0):
    return level * np.tile(np.asarray(pattern, np.float64), periods)


def test_seasonal_indices_of_an_exactly_periodic_series():
    # a constant level times a pattern: the centred moving average is the level
    # times the pattern's mean, so the indices are the pattern over its mean
    pattern = np.array([1.0, 2.0, 4.0, 1.0])  # even m: the (1/2, 1, 1, 1, 1/2) MA
    got = baselines.seasonal_indices(_periodic(pattern, 6), 4)
    np.testing.assert_allclose(got, pattern / pattern.mean(), rtol=1e-14)
    odd = np.array([3.0, 1.0, 2.0])  # odd m: the plain moving average
    got = baselines.seasonal_indices(_periodic(odd, 7), 3)
    np.testing.assert_allclose(got, odd / odd.mean(), rtol=1e-14)


def test_seasonal_indices_follow_the_first_value_not_the_calendar():
    # the same pattern started one step later: the figure is rolled by one
    pattern = np.array([1.0, 2.0, 4.0, 1.0])
    x = _periodic(np.roll(pattern, -1), 6)
    got = baselines.seasonal_indices(x, 4)
    np.testing.assert_allclose(got, np.roll(pattern, -1) / pattern.mean(), rtol=1e-14)


def test_seasonality_test_by_hand():
    rng = np.random.default_rng(0)
    t = np.arange(24 * 30)
    seasonal = 100 + 10 * np.sin(2 * np.pi * t / 24) + rng.normal(size=t.size)
    assert baselines.is_seasonal(seasonal, 24)
    assert not baselines.is_seasonal(100 + rng.normal(size=t.size), 24)
    assert not baselines.is_seasonal(seasonal[: 3 * 24 - 1], 24)  # under 3 m values
    # R's acf computes floor(10 log10 T) lags: 20 for T = 100, fewer than m = 24,
    # so R's r_24 is NA and the test says "not seasonal", however strong the season
    assert not baselines.is_seasonal(seasonal[:100], 24)
    assert not baselines.is_seasonal(seasonal[:251], 24)  # floor(23.997) = 23
    assert baselines.is_seasonal(seasonal[:252], 24)  # floor(10 log10 252) = 24
    # the limit itself: |r_m| against 1.645 sqrt((1 + 2 sum_{k<m} r_k^2) / T)
    x = seasonal[:300]
    r = baselines.acf(x, 24)
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(r[:23] ** 2)) / x.size)
    assert baselines.is_seasonal(x, 24) == (abs(r[23]) > limit)
    assert not baselines.is_seasonal(seasonal, 1)  # m = 1: no season to test


def test_naive2_is_naive_without_season_and_seasonal_naive_on_a_pure_season():
    rng = np.random.default_rng(1)
    noise = 50 + rng.normal(size=200)
    np.testing.assert_array_equal(
        baselines.naive2(noise, 10, 24), baselines.naive(noise, 10)
    )
    pure = _periodic(1 + np.abs(np.sin(np.arange(24) / 3)), 12)  # 288 values
    assert baselines.is_seasonal(pure, 24)
    np.testing.assert_allclose(
        baselines.naive2(pure, 30, 24), baselines.seasonal_naive(pure, 30, 24), 1e-12
    )


def test_naive2_by_hand_adjusts_then_seasonalises():
    rng = np.random.default_rng(2)
    t = np.arange(24 * 12)
    x = (100 + t) * (1 + 0.3 * np.sin(2 * np.pi * t / 24)) + rng.normal(size=t.size)
    figure = baselines.seasonal_indices(x, 24)
    last = x[-1] / figure[(x.size - 1) % 24]
    want = last * figure[(x.size + np.arange(5)) % 24]
    np.testing.assert_allclose(baselines.naive2(x, 5, 24), want, rtol=1e-15)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: baselines.naive([1.0], 0), ["`h`", "got 0"]),
        (lambda: baselines.naive([[1.0]], 2), ["`x`", "(1, 1)"]),
        (lambda: baselines.naive([1.0, np.nan], 2), ["finite", "index 1"]),
        (lambda: baselines.seasonal_naive([1.0, 2.0], 2, 3), ["at least 3", "got 2"]),
        (lambda: baselines.naive2([1.0] * 30, 2, 1.5), ["`m`", "1.5"]),
        (lambda: baselines.seasonal_indices([1.0] * 8, 4), ["at least 9", "got 8"]),
    ],
)
def test_bad_input_gets_a_clear_error(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value)


def test_autoregressive_recovers_a_noise_free_ar2_and_continues_it():
    # x[t] = 2 + 0.5 x[t-1] - 0.3 x[t-2], from x[0] = 1, x[1] = 4: least squares
    # fits it exactly, so the forecast is the recursion itself
    x = [1.0, 4.0]
    for _ in range(40):
        x.append(2 + 0.5 * x[-1] - 0.3 * x[-2])
    want = list(x[-2:])
    for _ in range(6):
        want.append(2 + 0.5 * want[-1] - 0.3 * want[-2])
    got = baselines.autoregressive(np.array(x), 6, 2)
    np.testing.assert_allclose(got, want[2:], rtol=1e-10)


def test_autoregressive_of_order_one_by_hand():
    # three points, slope and intercept through (1, 2) and (2, 4): x' = 2 x
    got = baselines.autoregressive([1.0, 2.0, 4.0], 2, 1)
    np.testing.assert_allclose(got, [8.0, 16.0], rtol=1e-12)
    with pytest.raises(ValueError, match="at least 3 values, got 2"):
        baselines.autoregressive([1.0, 2.0], 2, 1)
