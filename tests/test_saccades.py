"""The N-MNIST saccade simulator (evsim.datasets.saccades), checked against real recordings of the same digits."""

from __future__ import annotations

import numpy as np
import pytest

from evsim.datasets.mnist import load_mnist
from evsim.datasets.nmnist import NMNIST, read_nmnist
from evsim.datasets.samples import load_samples
from evsim.datasets.saccades import (
    AxisMove, DvsParams, SaccadePath, SimulatedNMNIST, simulate_saccades,
)
from evsim.errors import InputError


@pytest.fixture(scope="module")
def same_digits(mnist_root, nmnist_root):
    """The vendored real recordings and the simulation of the MNIST digits they show."""
    real, images, indices = [], [], []
    for split in ("test", "train"):
        digits, _ = load_mnist(mnist_root, split)
        for path in NMNIST(nmnist_root, split).files:
            index = int(path.stem) - 1
            real.append(read_nmnist(path))
            images.append(digits[index])
            indices.append(index + (60_000 if split == "test" else 0))
    return real, simulate_saccades(np.array(images), indices)


def rate_profile(events, bin_us=10_000, bins=31):
    return np.bincount(np.minimum(events["t"] // bin_us, bins - 1), minlength=bins).astype(float)


def test_recordings_are_valid_events_in_time_order(same_digits):
    _, simulated = same_digits
    params = DvsParams()
    for events in simulated:
        assert len(events) > 500
        assert np.all(np.diff(events["t"]) >= 0)
        assert events["t"].min() >= 0 and events["t"].max() <= params.start_us + params.duration_us
        assert events["x"].min() >= 0 and events["x"].max() < 34
        assert events["y"].min() >= 0 and events["y"].max() < 34


def test_event_counts_and_polarity_match_the_real_recordings(same_digits):
    real, simulated = same_digits
    real_counts = np.array([len(e) for e in real])
    simulated_counts = np.array([len(e) for e in simulated])
    assert 0.75 < np.median(simulated_counts) / np.median(real_counts) < 1.33
    # digits with more ink send more events, in the camera and in the simulation
    assert np.corrcoef(real_counts, simulated_counts)[0, 1] > 0.6
    on_fraction = np.mean([e["p"].mean() for e in simulated])
    assert 0.46 < on_fraction < 0.54


def test_rate_profile_has_the_three_saccades_of_the_real_ones(same_digits):
    real, simulated = same_digits
    real_profile = np.mean([rate_profile(e) for e in real], axis=0)
    simulated_profile = np.mean([rate_profile(e) for e in simulated], axis=0)
    assert np.corrcoef(real_profile, simulated_profile)[0, 1] > 0.9
    peaks = [simulated_profile[2:8].max(), simulated_profile[12:18].max(), simulated_profile[22:29].max()]
    dips = [simulated_profile[8:13].min(), simulated_profile[18:23].min()]
    assert max(dips) < 0.5 * min(peaks)  # dips near 100 and 200 ms, as SOURCES.md describes the real files


def test_a_simulated_recording_looks_most_like_its_own_digit(same_digits):
    real, simulated = same_digits

    def image(events):
        counts = np.bincount(events["y"].astype(int) * 34 + events["x"], minlength=34 * 34).astype(float)
        counts -= counts.mean()
        return counts / np.linalg.norm(counts)

    similarity = np.array([image(e) for e in simulated]) @ np.array([image(e) for e in real]).T
    own = np.diag(similarity)
    others = (similarity.sum(1) - own) / (len(own) - 1)
    assert np.mean(own > others) > 0.9


def test_polarity_and_timing_match_the_real_recordings(same_digits):
    """Event frames (10 ms x polarity x pixel) of a digit's simulation and of its real recording
    correlate, and only with the real files' polarity labelling and without a time shift."""
    real, simulated = same_digits

    def frames(events):
        counts = np.zeros((31, 2, 34, 34))
        np.add.at(counts, (np.minimum(events["t"] // 10_000, 30), events["p"].astype(int),
                           events["y"].astype(int), events["x"].astype(int)), 1.0)
        return counts - counts.mean()

    def correlation(a, b):
        return (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())

    pairs = [(frames(r), frames(s)) for r, s in zip(real, simulated)]
    same = np.mean([correlation(r, s) for r, s in pairs])
    swapped = np.mean([correlation(r, s[:, ::-1]) for r, s in pairs])
    late = np.mean([correlation(r, np.roll(s, 2, axis=0)) for r, s in pairs])
    assert same > 0.3 and same > swapped + 0.2 and same > late + 0.1


def test_a_digit_gives_the_same_recording_in_any_batch(mnist_root):
    images, _ = load_mnist(mnist_root, "test")
    together = simulate_saccades(images[:3], [0, 1, 2], seed=5)
    alone = simulate_saccades(images[1:2], [1], seed=5)
    np.testing.assert_array_equal(together[1], alone[0])
    other_seed = simulate_saccades(images[1:2], [1], seed=6)
    assert not np.array_equal(alone[0], other_seed[0])


def test_without_motion_only_noise_remains(mnist_root):
    images, _ = load_mnist(mnist_root, "test")
    still = SaccadePath(x=(AxisMove(0, 1, 3.0, 3.0),), y=(AxisMove(0, 1, 3.0, 3.0),))
    quiet = simulate_saccades(images[:4], range(4), DvsParams(path=still, noise_hz=0.0))
    assert all(len(e) == 0 for e in quiet)
    noisy = simulate_saccades(images[:4], range(4), DvsParams(path=still, noise_hz=5.0))
    expected = 5.0 * 34 * 34 * 0.3
    assert all(abs(len(e) - expected) < 5 * np.sqrt(expected) for e in noisy)


def test_a_higher_threshold_gives_fewer_events(mnist_root):
    images, _ = load_mnist(mnist_root, "test")
    low = simulate_saccades(images[:5], range(5), DvsParams(contrast_threshold=0.3, noise_hz=0))
    high = simulate_saccades(images[:5], range(5), DvsParams(contrast_threshold=0.6, noise_hz=0))
    assert all(len(h) < 0.7 * len(lo) for h, lo in zip(high, low))


def test_bad_inputs_are_refused(mnist_root):
    images, _ = load_mnist(mnist_root, "test")
    with pytest.raises(InputError, match=r"\[B, 28, 28\]"):
        simulate_saccades(images[0], [0])
    with pytest.raises(InputError, match="indices"):
        simulate_saccades(images[:2], [0])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        simulate_saccades(images[:1].astype(np.float32), [0])
    with pytest.raises(InputError, match="contrast_threshold"):
        DvsParams(contrast_threshold=0)
    with pytest.raises(InputError, match="refractory_us"):
        DvsParams(refractory_us=-1)
    far = SaccadePath(x=(AxisMove(0, 1000, 0.0, 20.0),), y=(AxisMove(0, 1, 0.0, 0.0),))
    with pytest.raises(InputError, match="leaves the display"):
        simulate_saccades(images[:1], [0], DvsParams(path=far))


def test_the_dataset_leaves_out_the_digits_real_recordings_show(mnist_root):
    dataset = SimulatedNMNIST(mnist_root, "test")  # the vendored 500 test digits; 1-100 are recorded
    images, labels = load_mnist(mnist_root, "test")
    assert len(dataset) == 400 and dataset.mnist_indices[0] == 100
    np.testing.assert_array_equal(dataset.labels, labels[100:])
    events, label = dataset[7]
    assert label == labels[107]
    np.testing.assert_array_equal(events, simulate_saccades(images[107:108], [107])[0])
    with pytest.raises(IndexError):
        dataset[400]


def test_training_on_simulated_digits_then_fine_tuning_on_real_recordings(tmp_path, mnist_root, simulated_mnist_root,
                                                                            nmnist_root, capsys):
    pytest.importorskip("torch")
    from evsim.cli.main import main
    from evsim.model.file import load_model

    root = simulated_mnist_root
    assert len(load_samples("nmnist-sim", root, "train")) == 40

    assert main(["train", "--dataset", "nmnist-sim", "--data", str(mnist_root), "--arch", "lenet", "--epochs", "1",
                 "--timesteps", "2", "--out", str(tmp_path / "none.npz")]) == 2
    assert "leaves out MNIST training digits 1-1000" in capsys.readouterr().err

    common = ["--arch", "lenet", "--epochs", "1", "--timesteps", "4", "--batch-size", "8", "--no-progress",
              "--threads", "1"]
    pretrained = tmp_path / "sim.npz"
    assert main(["train", "--dataset", "nmnist-sim", "--data", str(root), "--out", str(pretrained), *common]) == 0
    assert load_model(pretrained).graph.meta["dataset"] == "nmnist-sim"
    # a model of simulated N-MNIST runs on real recordings
    assert main(["run", "--model", str(pretrained), "--dataset", "nmnist", "--data", str(nmnist_root), "--json"]) == 0
    capsys.readouterr()

    tuned = tmp_path / "tuned.npz"
    assert main(["train", "--dataset", "nmnist", "--data", str(nmnist_root), "--out", str(tuned),
                 "--init", str(pretrained), "--lr", "0", *common]) == 0
    assert "starting from the weights of" in capsys.readouterr().out
    meta = load_model(tuned).graph.meta
    assert meta["dataset"] == "nmnist" and meta["pretrained_on"] == "nmnist-sim" and meta["init"] == "sim.npz"
    # lr 0: the fine-tuned weights are the pretrained ones, so --init really loaded them
    for name, weight in load_model(pretrained).weights.items():
        np.testing.assert_array_equal(load_model(tuned).weights[name], weight)

    other = tmp_path / "other.npz"
    assert main(["train", "--dataset", "nmnist", "--data", str(nmnist_root), "--out", str(other),
                 "--init", str(pretrained), "--arch", "vgg7", *common[2:]]) == 2
    assert "same architecture" in capsys.readouterr().err
