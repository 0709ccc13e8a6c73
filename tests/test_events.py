"""Event binning (time_bins / bin_events / to_frames) on real N-MNIST events, and Poisson coding."""

from __future__ import annotations

import numpy as np
import pytest

from evsim.datasets.encoding import poisson_spikes
from evsim.events import bin_events, from_binned, make_events, time_bins, to_frames
from evsim.datasets.nmnist import SENSOR_SIZE, read_nmnist
from evsim.errors import InputError


def test_time_bins_edges():
    t = np.array([0, 2999, 3000, 5999, 6000, 299_999, 300_000, -1, 10**9])
    assert time_bins(t, 100, 300_000).tolist() == [0, 0, 1, 1, 2, 99, -1, -1, -1]
    assert time_bins(t, 1, 300_000).tolist() == [0, 0, 0, 0, 0, 0, -1, -1, -1]
    with pytest.raises(InputError):
        time_bins(t, 0)


@pytest.mark.parametrize("timesteps, window_us", [(50, 300_000), (7, 100_000), (1, 400_000)])
def test_frames_and_step_lists_agree_on_real_recordings(nmnist_bin_files, timesteps, window_us):
    for path in nmnist_bin_files[::4]:
        events = read_nmnist(path)
        binned = bin_events(events, SENSOR_SIZE, timesteps, window_us)
        frames = to_frames(binned)
        assert frames.shape == (timesteps, 2, 34, 34)
        since_first = events["t"] - events["t"].min()  # the window starts at the first event
        inside = events[since_first < window_us]
        assert frames.sum() == len(inside) == binned.step_offsets[-1] == binned.window.used
        assert binned.window.read == len(events) and sum(binned.window.dropped.values()) == len(events) - len(inside)
        assert frames[:, 1].sum() == inside["p"].sum()
        # per-step counts against an independent histogram of the timestamps
        edges = np.arange(timesteps + 1) * (window_us // timesteps)
        if window_us % timesteps == 0:
            counts, _ = np.histogram(since_first[since_first < window_us], bins=edges)
            assert frames.sum(axis=(1, 2, 3)).tolist() == counts.tolist()
        # each step's event list as the engine takes it (channels-last neuron indices),
        # accumulated, is exactly that step's frame
        spikes = from_binned(binned)
        for s in range(timesteps):
            index = spikes.index[spikes.step_offsets[s] : spikes.step_offsets[s + 1]]
            frame = np.bincount(index, minlength=34 * 34 * 2).reshape(34, 34, 2).transpose(2, 0, 1)
            np.testing.assert_array_equal(frame, frames[s])


def test_events_past_the_window_are_dropped_not_clipped():
    # the window starts at the first event (t=10), so t=300_010 is its first instant past the end
    events = make_events([1, 2, 3], [1, 2, 3], [10, 300_009, 300_010], [1, 0, 1])
    binned = bin_events(events, SENSOR_SIZE, timesteps=10)
    frames = to_frames(binned)
    assert frames.sum() == 2
    assert frames[0, 1, 1, 1] == 1 and frames[9, 0, 2, 2] == 1
    assert binned.window.dropped == {"after_window": 1} and binned.window.origin_us == 10


@pytest.mark.parametrize("x, y, p", [(34, 0, 0), (0, 34, 1), (-1, 3, 0), (3, -2, 1)])
def test_events_outside_the_sensor_raise(nmnist_root, x, y, p):
    events = read_nmnist(nmnist_root / "Test/7/00001.bin")[:100].copy()
    events[57] = (x, y, events["t"][57], p)
    with pytest.raises(InputError, match=r"event 57 .* outside the sensor 34x34x2"):
        bin_events(events, SENSOR_SIZE)


def test_polarity_outside_a_single_polarity_sensor_raises():
    events = make_events([1, 1], [1, 1], [0, 5], [False, True])
    with pytest.raises(InputError, match="event 1"):
        bin_events(events, (34, 34, 1))


# ---------------------------------------------------------------- Poisson coding


def test_same_seed_same_train_other_seed_other_train():
    image = np.random.default_rng(0).random((28, 28))
    a = poisson_spikes(image, 20, rng=5)
    b = poisson_spikes(image, 20, rng=np.random.default_rng(5))
    c = poisson_spikes(image, 20, rng=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_rate_follows_scaled_intensity(scale):
    levels = np.array([0.0, 0.1, 0.4, 0.8, 1.0, -0.6])
    image = np.repeat(levels, 400).reshape(6, 400)  # 400 pixels per level
    spikes = poisson_spikes(image, 250, rng=1, scale=scale)
    assert spikes.shape == (250, 6, 400) and spikes.dtype == np.int8
    rates = np.abs(spikes).mean(axis=(0, 2))
    # 100,000 Bernoulli draws per level: 4 standard errors is below 0.007
    np.testing.assert_allclose(rates, scale * np.abs(levels), atol=0.007)


def test_bipolar_signs_follow_the_pixel_sign():
    image = np.array([[-1.0, -0.3, 0.0, 0.3, 1.0]])
    spikes = poisson_spikes(image, 500, rng=2, scale=1.0)
    negative, zero, positive = spikes[..., :2], spikes[..., 2], spikes[..., 3:]
    assert set(np.unique(negative)) == {-1, 0}
    assert not zero.any()
    assert set(np.unique(positive)) == {0, 1}
    assert np.all(spikes[:, 0, 0] == -1) and np.all(spikes[:, 0, 4] == 1)  # |x| * scale = 1


def test_mnist_images_code_to_unipolar_trains(mnist_root):
    from evsim.datasets.mnist import load_mnist

    images, _ = load_mnist(mnist_root, "test")
    intensity = images[:4].astype(np.float32) / 255
    spikes = poisson_spikes(intensity, 100, rng=0)
    assert spikes.min() == 0 and spikes.max() == 1
    assert not spikes[:, intensity == 0].any()  # dark pixels never fire
    expected = 0.5 * intensity.sum() * 100
    assert abs(int(spikes.sum()) - expected) < 0.02 * expected
