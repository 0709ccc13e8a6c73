"""MNIST (IDX), CIFAR-10 (binary batches) and SVHN (.mat) loaders, colour normalisation, data_root."""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from evsim.datasets import ColourNormalisation, data_root
from evsim.datasets.cifar10 import RECORD_BYTES, load_cifar10
from evsim.datasets.mnist import load_mnist, read_idx
from evsim.datasets.svhn import load_svhn
from evsim.errors import DataError, EvsimError, InputError
from idx_files import write_idx

# ---------------------------------------------------------------- MNIST


def test_vendored_mnist_subset(mnist_root):
    images, labels = load_mnist(mnist_root, "test")
    assert images.shape == (500, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (500,) and labels.dtype == np.int64
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert images.min() == 0 and images.max() == 255
    train_images, train_labels = load_mnist(mnist_root, "train")
    assert train_images.shape == (1000, 28, 28)
    assert train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert set(np.unique(train_labels)) == set(range(10))


def test_full_mnist_matches_the_published_facts(shared_data, mnist_root):
    root = shared_data / "mnist"
    if not root.is_dir():
        pytest.skip("no MNIST in the data folder")
    train_images, train_labels = load_mnist(root, "train")
    test_images, test_labels = load_mnist(root, "test")
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert np.bincount(train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train_images.mean() / 255 == pytest.approx(0.1307, abs=5e-5)
    assert test_images.mean() / 255 == pytest.approx(0.1325, abs=5e-5)
    assert train_images.std() / 255 == pytest.approx(0.3081, abs=5e-5)
    vendored_images, vendored_labels = load_mnist(mnist_root, "test")
    np.testing.assert_array_equal(vendored_images, test_images[:500])
    np.testing.assert_array_equal(vendored_labels, test_labels[:500])


@pytest.fixture
def small_mnist(tmp_path, mnist_root):
    """The first 20 vendored test images and labels, uncompressed under the standard names."""
    images, labels = load_mnist(mnist_root, "test")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:20], 2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:20], 2049)
    return tmp_path, images[:20], labels[:20]


def test_uncompressed_idx_reads_the_same(small_mnist):
    root, images, labels = small_mnist
    got_images, got_labels = load_mnist(root, "test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw"])
def test_mnist_found_in_common_layouts(tmp_path, mnist_root, layout):
    shutil.copytree(mnist_root, tmp_path / layout)
    assert load_mnist(tmp_path, "test")[1][:3].tolist() == [7, 2, 1]


def test_idx_wrong_magic(small_mnist):
    root, _, _ = small_mnist
    images = root / "t10k-images-idx3-ubyte"
    shutil.copy(root / "t10k-labels-idx1-ubyte", images)  # a label file where images belong
    with pytest.raises(DataError, match="magic number is 2049, expected 2051") as caught:
        load_mnist(root, "test")
    assert caught.value.offset == 0 and caught.value.path == str(images)


def test_idx_garbage_is_not_idx(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


def test_idx_truncated_data(small_mnist):
    root, _, _ = small_mnist
    path = root / "t10k-images-idx3-ubyte"
    content = path.read_bytes()
    path.write_bytes(content[:-100])
    with pytest.raises(DataError, match=r"truncated: shape \(20, 28, 28\) needs 15680 bytes, only "
                       r"15580") as caught:
        load_mnist(root, "test")
    assert caught.value.offset == len(content) - 100


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "h.idx"
    path.write_bytes((2051).to_bytes(4, "big") + (5).to_bytes(4, "big"))
    with pytest.raises(DataError, match="header of 3 dimensions is cut off") as caught:
        read_idx(path)
    assert caught.value.offset == 8


def test_idx_trailing_bytes(small_mnist):
    root, _, _ = small_mnist
    path = root / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00\x01")
    with pytest.raises(DataError, match="2 unexpected bytes") as caught:
        load_mnist(root, "test")
    assert caught.value.offset == 8 + 20


def test_idx_damaged_gzip(tmp_path, mnist_root):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes((mnist_root / path.name).read_bytes()[:-30])
    with pytest.raises(DataError, match="damaged gzip"):
        read_idx(path)


def test_mnist_count_mismatch_and_bad_label(small_mnist):
    root, images, labels = small_mnist
    write_idx(root / "t10k-labels-idx1-ubyte", labels[:19], 2049)
    with pytest.raises(DataError, match="19 labels for the 20 images"):
        load_mnist(root, "test")
    bad = labels.copy()
    bad[4] = 12
    write_idx(root / "t10k-labels-idx1-ubyte", bad, 2049)
    with pytest.raises(DataError, match="label 12 is not a digit") as caught:
        load_mnist(root, "test")
    assert caught.value.offset == 12


def test_mnist_missing_files_and_split(tmp_path):
    with pytest.raises(DataError, match="no MNIST train images here"):
        load_mnist(tmp_path, "train")
    with pytest.raises(DataError, match="unknown MNIST split"):
        load_mnist(tmp_path, "valid")


# ---------------------------------------------------------------- CIFAR-10


def cifar_batch(path: Path, labels, rng) -> np.ndarray:
    """Write a batch in the official record layout; return its raw bytes as [N, 3073]."""
    records = rng.integers(0, 256, size=(len(labels), RECORD_BYTES), dtype=np.uint8)
    records[:, 0] = labels
    path.write_bytes(records.tobytes())
    return records


@pytest.fixture
def cifar_root(tmp_path):
    rng = np.random.default_rng(7)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    batches = [cifar_batch(folder / f"data_batch_{i}.bin", [i, (i + 1) % 10, 9], rng)
               for i in range(1, 6)]
    test = cifar_batch(folder / "test_batch.bin", [3, 0, 8, 8], rng)
    return tmp_path, batches, test


def test_cifar_records_become_chw_images(cifar_root):
    root, batches, test = cifar_root
    images, labels = load_cifar10(root, "test")
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [3, 0, 8, 8] and labels.dtype == np.int64
    # the record is label, then red plane, green plane, blue plane, each row by row
    for n, c, row, col in [(0, 0, 0, 0), (1, 1, 5, 31), (2, 2, 31, 0), (3, 2, 31, 31)]:
        assert images[n, c, row, col] == test[n, 1 + c * 1024 + row * 32 + col]


def test_cifar_train_is_the_five_batches_in_order(cifar_root):
    root, batches, _ = cifar_root
    images, labels = load_cifar10(root, "train")
    assert labels.tolist() == [1, 2, 9, 2, 3, 9, 3, 4, 9, 4, 5, 9, 5, 6, 9]
    np.testing.assert_array_equal(images[12].reshape(-1), batches[4][0, 1:])
    # the batch folder itself is accepted as root
    np.testing.assert_array_equal(load_cifar10(root / "cifar-10-batches-bin", "train")[1], labels)


def test_cifar_bad_size(cifar_root):
    root, _, _ = cifar_root
    path = root / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(DataError, match="not a whole number of 3073-byte") as caught:
        load_cifar10(root, "test")
    assert caught.value.offset == 3 * RECORD_BYTES and caught.value.path == str(path)


def test_cifar_bad_label_and_empty(cifar_root):
    root, _, _ = cifar_root
    path = root / "cifar-10-batches-bin" / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[2 * RECORD_BYTES] = 10
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="record 2 has label 10") as caught:
        load_cifar10(root, "test")
    assert caught.value.offset == 2 * RECORD_BYTES
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_cifar10(root, "test")


def test_cifar_missing_batch_or_folder(cifar_root, tmp_path_factory):
    root, _, _ = cifar_root
    (root / "cifar-10-batches-bin" / "data_batch_4.bin").unlink()
    with pytest.raises(DataError, match="data_batch_4.bin"):
        load_cifar10(root, "train")
    assert len(load_cifar10(root, "test")[0]) == 4  # the test split is still whole
    with pytest.raises(DataError, match="no CIFAR-10 binary test batches"):
        load_cifar10(tmp_path_factory.mktemp("empty"), "test")


# ---------------------------------------------------------------- SVHN


def svhn_mat(path: Path, n: int, labels, rng) -> np.ndarray:
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    scipy.io.savemat(path, {"X": x, "y": np.asarray(labels, dtype=np.uint8).reshape(-1, 1)})
    return x


def test_svhn_layout_and_label_ten_is_zero(tmp_path):
    rng = np.random.default_rng(3)
    x = svhn_mat(tmp_path / "test_32x32.mat", 5, [10, 1, 9, 10, 5], rng)
    images, labels = load_svhn(tmp_path, "test")
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 9, 0, 5] and labels.dtype == np.int64
    for n, c, row, col in [(0, 0, 0, 0), (1, 2, 3, 17), (4, 1, 31, 30)]:
        assert images[n, c, row, col] == x[row, col, c, n]


def test_svhn_in_subfolder(tmp_path):
    (tmp_path / "svhn").mkdir()
    svhn_mat(tmp_path / "svhn" / "train_32x32.mat", 2, [4, 10], np.random.default_rng(0))
    assert load_svhn(tmp_path, "train")[1].tolist() == [4, 0]


@pytest.mark.parametrize(
    "contents, words",
    [
        ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, "lacks the variable(s) y"),
        ({"X": np.zeros((32, 32, 2), np.uint8), "y": np.ones((1, 1))}, "uint8 [32, 32, 3, N]"),
        ({"X": np.zeros((32, 32, 3, 2), np.float64), "y": np.ones((2, 1))}, "found float64"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))}, "3 labels for 2 images"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[3], [0]])}, "label 0 of image 1"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [3]])}, "label 11 of image 0"),
    ],
)
def test_svhn_bad_contents(tmp_path, contents, words):
    scipy.io.savemat(tmp_path / "test_32x32.mat", contents)
    with pytest.raises(DataError) as caught:
        load_svhn(tmp_path, "test")
    assert words in caught.value.reason


def test_svhn_not_a_mat_file_or_missing(tmp_path):
    (tmp_path / "test_32x32.mat").write_bytes(b"this is not MATLAB" * 20)
    with pytest.raises(DataError, match="cannot read as a MATLAB file"):
        load_svhn(tmp_path, "test")
    with pytest.raises(DataError, match="no SVHN train file here"):
        load_svhn(tmp_path, "train")


# ---------------------------------------------------------------- colour normalisation


def colour_images(rng, n):
    """Channels with very different brightness and contrast, like real colour data."""
    base = rng.normal(size=(n, 3, 8, 8)) * np.array([20, 50, 5]).reshape(1, 3, 1, 1)
    return np.clip(base + np.array([120, 90, 200]).reshape(1, 3, 1, 1), 0, 255).astype(np.uint8)


def test_normalise_colour_zero_mean_equal_std_bounded():
    images = colour_images(np.random.default_rng(0), 200)
    out = ColourNormalisation.fit(images)(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    assert np.abs(out).max() == pytest.approx(1.0, abs=1e-6)
    stats = ColourNormalisation.fit(images)
    for c in range(3):
        channel = out[:, c]
        assert abs(channel.mean()) < 1e-4
        # unit std before the one common scaling: every channel ends with std 1/bound
        assert channel.std() == pytest.approx(1 / stats.bound, rel=1e-4)
        assert stats.mean[c] == pytest.approx(images[:, c].mean())
        assert stats.std[c] == pytest.approx(images[:, c].std())


def test_normalise_test_split_with_training_statistics():
    rng = np.random.default_rng(1)
    train, test = colour_images(rng, 100), colour_images(rng, 50)
    test[0, 2] = 255  # brighter than anything in training: clipped, not out of range
    stats = ColourNormalisation.fit(train)
    out = stats(test)
    assert out.min() >= -1 and out.max() <= 1
    assert np.all(out[0, 2] == 1.0)
    manual = (test[1].astype(np.float64) - stats.mean[:, None, None]) / (
        stats.std[:, None, None] * stats.bound)
    np.testing.assert_allclose(out[1], manual, atol=1e-5)


def test_normalise_rejects_constant_channel_and_bad_shape():
    images = np.full((4, 3, 2, 2), 7, np.uint8)
    with pytest.raises(InputError, match="channel 0 is constant"):
        ColourNormalisation.fit(images)
    with pytest.raises(InputError, match=r"\[N, C, H, W\]"):
        ColourNormalisation.fit(np.zeros((3, 2, 2)))


# ---------------------------------------------------------------- data_root


def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EVSIM_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("EVSIM_DATA")
    repository = Path(__file__).resolve().parent.parent
    shared = repository.parent / "shared" / "data"
    assert data_root() == (shared if shared.is_dir() else None)


def test_svhn_without_scipy_names_the_extra(tmp_path, monkeypatch):
    svhn_mat(tmp_path / "test_32x32.mat", 2, [4, 10], np.random.default_rng(0))
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if scipy were not installed
    with pytest.raises(EvsimError, match=r"^reading SVHN \.mat files needs scipy: pip install 'evsim\[data\]'$"):
        load_svhn(tmp_path, "test")
