"""The trainer's view of the datasets: input frames from the vendored MNIST and N-MNIST samples."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from evsim.events import bin_events, to_frames  # noqa: E402
from evsim.datasets.nmnist import read_nmnist  # noqa: E402
from evsim.errors import DataError, InputError  # noqa: E402
from evsim.datasets.samples import (  # noqa: E402
    MNIST_SHIFT,
    SampleMix,
    augment_images,
    crop_and_flip,
    epoch_draw,
    load_samples,
    load_training_samples,
    split_validation,
    subset,
)


def test_nmnist_frames_are_the_engines_binning(nmnist_root):
    samples = load_samples("nmnist", nmnist_root, "test")
    assert samples.encoding == {"kind": "events", "window_us": 300_000, "sensor_size": [34, 34, 2]}
    assert samples.input_shape == (2, 34, 34)
    batch = np.array([0, len(samples) - 1])
    frames = samples.inputs(batch, 50, np.random.default_rng(0))
    assert frames.shape == (50, 2, 2, 34, 34) and frames.dtype == np.float32
    files = [samples.recordings.files[i] for i in samples.indices[batch]]
    for b, path in enumerate(files):
        events = read_nmnist(path)
        expected = to_frames(bin_events(events, (34, 34, 2), 50, 300_000))
        np.testing.assert_array_equal(frames[:, b], expected)
        # the window starts at the recording's first event (evsim.events.window_events)
        assert frames[:, b].sum() == np.count_nonzero(events["t"] - events["t"][0] < 300_000)
    assert samples.labels[0] == 0 and samples.labels[-1] == 9  # files come sorted by digit


def test_mnist_poisson_inputs(mnist_root):
    samples = load_samples("mnist", mnist_root, "test", limit=64)
    assert len(samples) == 64 and samples.encoding == {"kind": "poisson", "scale": 0.5}
    assert samples.images.min() >= 0 and samples.images.max() <= 1
    spikes = samples.inputs(np.arange(64), 200, np.random.default_rng(1))
    assert spikes.shape == (200, 64, 1, 28, 28) and set(np.unique(spikes)) <= {0, 1}
    rate = spikes.mean(axis=0)
    np.testing.assert_allclose(rate, 0.5 * samples.images, atol=0.15)  # rate = scale x intensity
    assert abs(rate.mean() - 0.5 * samples.images.mean()) < 0.005


def test_limit_is_a_fixed_spread_subset():
    chosen = subset(1000, 100)
    assert len(chosen) == 100 and np.array_equal(chosen, subset(1000, 100))
    assert chosen.max() > 900  # spread over the whole split, not its first (sorted) files
    assert np.array_equal(subset(50, None), np.arange(50))
    with pytest.raises(InputError):
        subset(50, 0)


def test_limit_range_takes_what_a_shorter_limit_left_out():
    first, rest = subset(1000, 300), subset(1000, (300, 1000))
    assert len(rest) == 700 and not np.intersect1d(first, rest).size
    assert np.array_equal(np.union1d(first, rest), np.arange(1000))
    assert np.array_equal(subset(1000, (0, 300)), first)
    assert np.array_equal(np.union1d(subset(1000, (100, 250)), subset(1000, (250, 300))),
                          np.setdiff1d(first, subset(1000, 100)))
    for bad in ((5, 5), (7, 3), (1000, 1200)):
        with pytest.raises(InputError):
            subset(1000, bad)


def test_crop_and_flip_moves_but_keeps_pixels():
    rng = np.random.default_rng(0)
    images = rng.random((20, 3, 32, 32)).astype(np.float32)
    out = crop_and_flip(images, np.random.default_rng(1))
    assert out.shape == images.shape
    assert not np.array_equal(out, images)
    # every output pixel is an input pixel of the same image and channel, or padding (0)
    for i in range(20):
        values = set(np.round(images[i, 0].ravel(), 6)) | {0.0}
        assert set(np.round(out[i, 0].ravel(), 6)) <= values


def test_mnist_shifts_move_digits_without_flipping_them():
    rng = np.random.default_rng(0)
    images = np.zeros((200, 1, 28, 28), np.float32)
    images[:, 0, 8:20, 10:14] = rng.random((200, 12, 4)) + 0.5  # an asymmetric blob inside the border
    out = augment_images("mnist", images, np.random.default_rng(1))
    offsets = set()
    for i in range(200):
        # the output is the input translated by (dy, dx), |dy|, |dx| <= MNIST_SHIFT: never mirrored
        found = [(dy, dx) for dy in range(-MNIST_SHIFT, MNIST_SHIFT + 1) for dx in range(-MNIST_SHIFT, MNIST_SHIFT + 1)
                 if np.array_equal(np.roll(images[i], (dy, dx), axis=(1, 2)), out[i])]
        assert len(found) == 1, i
        offsets.add(found[0])
    assert len(offsets) == (2 * MNIST_SHIFT + 1) ** 2  # every shift is drawn
    assert np.array_equal(augment_images("mnist", images, np.random.default_rng(1)), out)  # seeded


def test_augment_shifts_mnist_training_images_only(mnist_root):
    plain = load_training_samples("mnist", mnist_root, limit=32)
    shifted = load_training_samples("mnist", mnist_root, limit=32, augment=True)
    assert not plain.augment and shifted.augment and shifted.event_augment is None
    rest, validation = split_validation(shifted, 8)
    assert rest.augment and not validation.augment
    with pytest.raises(InputError):  # recordings are augmented event by event, not as images
        load_samples("nmnist", mnist_root, "train", augment=True)


def test_missing_data_is_a_data_error(tmp_path):
    with pytest.raises(DataError):
        load_samples("mnist", tmp_path, "train")
    with pytest.raises(DataError):
        load_samples("nmnist", tmp_path, "train")
    with pytest.raises(InputError):
        load_samples("imagenet", tmp_path, "train")


def test_a_mix_gives_each_parts_frames_in_batch_order(nmnist_root, mnist_root):
    real = load_samples("nmnist", nmnist_root, "test")
    first, second = real.take(np.arange(0, 5)), real.take(np.arange(10, 13))
    mix = SampleMix((first, second))
    assert len(mix) == 8 and list(mix.labels) == [*first.labels, *second.labels]
    batch = np.array([6, 0, 4, 5, 7])  # across the boundary, out of order
    frames = mix.inputs(batch, 20, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    expected = np.concatenate([first.inputs(np.array([0, 4]), 20, rng), second.inputs(np.array([1, 0, 2]), 20, rng)],
                              axis=1)
    np.testing.assert_array_equal(frames, expected[:, [2, 0, 1, 3, 4]])
    with pytest.raises(InputError, match="one input shape"):
        SampleMix((first, load_samples("mnist", mnist_root, "test", limit=4)))


def test_epoch_draws_cover_the_pool_before_repeating():
    draws = [epoch_draw(10, 3, epoch, seed=4) for epoch in range(4)]
    assert all(len(d) == 3 and list(d) == sorted(d) for d in draws)
    assert len(np.unique(np.concatenate(draws[:3]))) == 9  # three epochs: nine different samples
    assert set(draws[3]) - set(np.concatenate(draws[:3])) != set()  # the tenth comes in the fourth, with a wrap
    assert np.array_equal(epoch_draw(10, 3, 2, seed=4), draws[2])  # a resumed run draws the same
    assert not np.array_equal(epoch_draw(10, 3, 0, seed=5), draws[0])
    for per_epoch in (0, 11):
        with pytest.raises(InputError, match="per epoch"):
            epoch_draw(10, per_epoch, 0)


def test_prefetched_loads_in_order_with_the_plain_loops_draws():
    """The loader thread of run_epoch: each batch's data in order, drawn from a shared generator
    exactly as a plain loop draws them, and a loader's error reaches the caller."""
    from evsim.training.prefetch import prefetched

    def draw(rng):
        return lambda n: rng.integers(0, 1000, n)

    items = [3, 1, 4, 1, 5]
    shared = draw(np.random.default_rng(9))  # one generator for the whole loop
    plain = [shared(n) for n in items]
    rng = np.random.default_rng(9)
    got = list(prefetched(draw(rng), items))
    assert len(got) == len(plain) and all(np.array_equal(a, b) for a, b in zip(got, plain))

    def broken(n):
        if n == 4:
            raise ValueError("bad recording")
        return n

    with pytest.raises(ValueError, match="bad recording"):
        list(prefetched(broken, items))
