"""N-MNIST .bin reading and the NMNIST dataset, checked against tonic and the shared MANIFEST."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tonic
import tonic.io

from evsim.events import EVENT_DTYPE
from evsim.datasets.nmnist import NMNIST, decode_nmnist, read_nmnist
from evsim.errors import DataError


def encode(*records: tuple[int, int, int, int]) -> bytes:
    """5-byte N-MNIST records from (x, y, p, t) tuples; y = 240 makes an overflow marker."""
    out = bytearray()
    for x, y, p, t in records:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def tonic_read(path) -> np.ndarray:
    return tonic.io.read_mnist_file(str(path), dtype=tonic.io.events_struct)


def test_reader_equals_tonic_on_every_vendored_file(nmnist_bin_files):
    assert len(nmnist_bin_files) == 21
    for path in nmnist_bin_files:
        ours, theirs = read_nmnist(path), tonic_read(path)
        assert ours.dtype == EVENT_DTYPE == theirs.dtype
        assert len(ours) == len(theirs) > 1000, path
        for field in ("x", "y", "t", "p"):
            np.testing.assert_array_equal(ours[field], theirs[field], err_msg=f"{path} {field}")


OVERFLOW_RECORDS = (
    (1, 2, 1, 8000),
    (3, 4, 0, 8190),
    (0, 240, 0, 0),  # overflow: later timestamps gain 2**13 µs
    (5, 6, 1, 5),
    (7, 8, 0, 100),
    (0, 240, 0, 0),
    (0, 240, 0, 0),  # two in a row: 2 * 2**13 more
    (33, 33, 1, 0),
    (9, 10, 1, 8191),
)


def test_overflow_markers_match_tonic(tmp_path):
    path = tmp_path / "overflow.bin"
    path.write_bytes(encode(*OVERFLOW_RECORDS))
    ours, theirs = read_nmnist(path), tonic_read(path)
    np.testing.assert_array_equal(ours, theirs)
    # Independently of tonic: markers are dropped and shift every later event.
    assert ours["t"].tolist() == [8000, 8190, 8192 + 5, 8192 + 100, 3 * 8192, 3 * 8192 + 8191]
    assert ours["x"].tolist() == [1, 3, 5, 7, 33, 9]
    assert ours["p"].tolist() == [True, False, True, False, True, True]


@pytest.mark.parametrize("records_per_chunk", [1, 2, 3, 700])
def test_decoding_in_chunks_equals_decoding_at_once(nmnist_root, records_per_chunk):
    raw = encode(*OVERFLOW_RECORDS) + encode(*[(x % 34, x % 7, x % 2, 30000 + 10 * x) for x in range(50)])
    raw += encode((0, 240, 0, 0)) * 4  # lift the real records below past the synthetic part
    raw += (nmnist_root / "Test/3/00019.bin").read_bytes()[:5000]  # real records, t from 11 µs
    whole = decode_nmnist(raw)
    step = 5 * records_per_chunk
    state = decode_nmnist(b"")
    pieces = []
    for start in range(0, len(raw), step):
        state = decode_nmnist(raw[start : start + step], "x.bin", state.next_offset,
                              state.time_offset, state.last_t)
        pieces.append(state.events)
    np.testing.assert_array_equal(np.concatenate(pieces), whole.events)
    assert state.next_offset == len(raw)
    assert state.time_offset == whole.time_offset == 7 * 2**13
    assert state.last_t == whole.last_t == int(whole.events["t"][-1])


def test_vendored_recordings_match_manifest(nmnist_root, nmnist_manifest):
    assert len(nmnist_manifest) == 20
    assert sorted(row["label"] for row in nmnist_manifest) == sorted(list(range(10)) * 2)
    for row in nmnist_manifest:
        events = read_nmnist(nmnist_root / row["path"])
        assert len(events) == row["n_events"], row["path"]
        assert events["t"][0] == row["t_first_us"]
        assert events["t"][-1] == row["t_last_us"]
        assert int(events["p"].sum()) == row["n_on_events"]
        assert events["x"].min() >= 0 and events["x"].max() <= 33
        assert events["y"].min() >= 0 and events["y"].max() <= 33
        assert np.all(np.diff(events["t"]) >= 0)


@pytest.mark.parametrize(
    "content, offset, words",
    [
        (b"", None, "empty"),
        (encode((1, 1, 0, 10), (2, 2, 1, 20)) + b"\x05\x06\x07", 10, "trailing bytes"),
        (encode((1, 1, 0, 10), (2, 2, 1, 20), (34, 5, 0, 30)), 10, "x=34"),
        (encode((1, 1, 0, 10), (0, 240, 0, 0), (5, 200, 0, 30)), 10, "y=200"),
        (encode((1, 1, 0, 10), (2, 2, 1, 20), (3, 3, 1, 19)), 10, "19"),
        # raw 1000 < 9000, but sorted once the overflow is counted: a valid file
        (encode((1, 1, 0, 9000), (0, 240, 0, 0), (2, 2, 0, 1000), (3, 3, 1, 1000)), None, None),
        (encode((0, 240, 0, 0), (0, 240, 0, 0)), None, "only timestamp overflow markers"),
    ],
    ids=["empty", "partial-record", "x-outside", "y-outside", "time-backwards", "valid-overflow",
         "only-markers"],
)
def test_bad_files_raise_data_error_with_offset(tmp_path, content, offset, words):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    if words is None:
        assert len(read_nmnist(path)) == 3
        return
    with pytest.raises(DataError) as caught:
        read_nmnist(path)
    error = caught.value
    assert error.path == str(path)
    assert error.offset == offset
    assert words in error.reason
    if offset is not None:
        assert f"at byte {offset}" in str(error)


def test_backwards_timestamp_across_chunks_is_caught():
    first = decode_nmnist(encode((1, 1, 0, 500)), "f.bin")
    with pytest.raises(DataError) as caught:
        decode_nmnist(encode((1, 1, 0, 499)), "f.bin", first.next_offset, first.time_offset,
                      first.last_t)
    assert caught.value.offset == 5 and "500" in caught.value.reason


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_nmnist(tmp_path / "absent.bin")


def test_dataset_lists_the_official_layout(nmnist_root, nmnist_manifest):
    test = NMNIST(nmnist_root, split="test")
    train = NMNIST(nmnist_root, split="train")
    assert len(test) == 19 and len(train) == 1
    assert test.sensor_size == (34, 34, 2)
    assert np.bincount(test.labels, minlength=10).tolist() == [2] * 8 + [1, 2]
    assert [f.relative_to(nmnist_root).as_posix() for f in train.files] == ["Train/8/00018.bin"]
    # digit, then file name, as tonic orders them
    assert test.files[:3] == [nmnist_root / "Test/0/00004.bin", nmnist_root / "Test/0/00011.bin",
                              nmnist_root / "Test/1/00003.bin"]
    expected = {row["path"]: row for row in nmnist_manifest}
    for i in (0, 7, 18):
        events, label = test[i]
        row = expected[test.files[i].relative_to(nmnist_root).as_posix()]
        assert label == row["label"] == int(test.files[i].parent.name)
        assert len(events) == row["n_events"]


def test_dataset_applies_tonic_transforms(nmnist_root):
    to_frame = tonic.transforms.ToFrame(sensor_size=NMNIST.sensor_size, n_event_bins=5)
    dataset = NMNIST(nmnist_root, "test", transform=to_frame, target_transform=lambda d: d + 100)
    frames, label = dataset[2]
    events = read_nmnist(dataset.files[2])
    assert frames.shape == (5, 2, 34, 34)
    assert frames.sum() == len(events)
    assert frames[:, 1].sum() == events["p"].sum()
    assert label == 101


def test_torch_dataloader_accepts_the_dataset(nmnist_root):
    torch = pytest.importorskip("torch")
    to_frame = tonic.transforms.ToFrame(sensor_size=NMNIST.sensor_size, n_time_bins=4)
    loader = torch.utils.data.DataLoader(NMNIST(nmnist_root, "test", transform=to_frame),
                                         batch_size=8, shuffle=False)
    batches = list(loader)
    assert [len(labels) for _, labels in batches] == [8, 8, 3]
    frames, labels = batches[0]
    assert frames.shape == (8, 4, 2, 34, 34)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_dataset_accepts_tonics_download_layout(tmp_path, nmnist_root):
    shutil.copytree(nmnist_root / "Test", tmp_path / "NMNIST" / "Test")
    dataset = NMNIST(tmp_path, "test")
    assert len(dataset) == 19
    assert dataset.files[0] == tmp_path / "NMNIST" / "Test" / "0" / "00004.bin"


@pytest.mark.parametrize("layout", ["nothing", "empty-split", "flat-files", "train-only"])
def test_folder_without_the_layout_is_a_data_error(tmp_path, nmnist_root, layout):
    sample = nmnist_root / "Test/7/00001.bin"
    if layout == "empty-split":
        (tmp_path / "Test" / "7").mkdir(parents=True)
    elif layout == "flat-files":
        (tmp_path / "Test").mkdir()
        shutil.copy(sample, tmp_path / "Test" / "00001.bin")
    elif layout == "train-only":
        (tmp_path / "Train" / "7").mkdir(parents=True)
        shutil.copy(sample, tmp_path / "Train" / "7" / "00001.bin")
    with pytest.raises(DataError, match=r"no N-MNIST Test/<digit>/\*\.bin recordings") as caught:
        NMNIST(tmp_path, "test")
    assert caught.value.path == str(tmp_path)


def test_unknown_split_is_a_data_error(nmnist_root):
    with pytest.raises(DataError, match="unknown N-MNIST split 'validation'"):
        NMNIST(nmnist_root, "validation")


def test_full_shared_copy_matches_its_manifest_and_sources(shared_data):
    import csv

    root = shared_data / "nmnist"
    if not (root / "MANIFEST.tsv").is_file():
        pytest.skip("no N-MNIST in the data folder")
    with open(root / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 828
    for row in rows:
        events = read_nmnist(root / row["path"])
        assert (len(events), events["t"][0], events["t"][-1], events["p"].sum()) == (
            int(row["n_events"]), int(row["t_first_us"]), int(row["t_last_us"]),
            int(row["n_on_events"])), row["path"]
    # Label histograms from SOURCES.md.
    train, test = NMNIST(root, "train"), NMNIST(shared_data, "test")  # the latter via nmnist/
    assert np.bincount(train.labels).tolist() == [79, 98, 81, 73, 81, 72, 73, 86, 73, 84]
    assert np.bincount(test.labels).tolist() == [3, 3, 3, 3, 3, 3, 3, 3, 1, 3]


def test_vendored_files_are_copies_of_the_shared_ones(nmnist_root, nmnist_manifest):
    import hashlib

    for row in nmnist_manifest:
        digest = hashlib.sha256((nmnist_root / row["path"]).read_bytes()).hexdigest()
        assert digest == row["sha256"], row["path"]

