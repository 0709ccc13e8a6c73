"""Event file formats: every vendored sample against SOURCES.md, chunked reading, bad files."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

from evsim.datasets.formats import open_event_file, read_events
from evsim.datasets.prophesee import Evt3State, decode_evt3
from evsim.errors import DataError

# SOURCES.md section 3 (and tests/data/README.md): events; first, last t (µs); x range; y range;
# ON events; and the sensor size the header (or, for DAT, the events) gives.
FACTS = {
    "sample_nmnist.bin": (4325, 654, 311175, (0, 33), (0, 33), 2145, (34, 34, 2), "format"),
    "sample.aedat4": (111954, 1605537493718345, 1605537494308262, (0, 319), (0, 239), 55023, (320, 240, 2), "header"),
    "ncars_sample_a.dat": (2009, 0, 99952, (0, 77), (0, 41), 1350, (78, 42, 2), "events"),
    "ncars_sample_b.dat": (4407, 0, 99937, (0, 53), (1, 60), 1671, (54, 61, 2), "events"),
    "gen41_evt3_small.raw": (5000, 5840504, 5885714, (11, 1279), (22, 698), 2894, (1280, 720, 2), "header"),
    "gen3_evt2_sample.raw": (539481, 1317888, 1367888, (60, 599), (18, 475), 367855, (640, 480, 2), "header"),
}
SUPPORTED = ("N-MNIST (.bin)", "AEDAT 4.0 (.aedat4)", "Prophesee DAT (.dat)", "Prophesee RAW EVT 2.0 or EVT 3.0 (.raw)")
EVT3_DRIFT_US = 45056  # the reference decoder's largest drift, SOURCES.md


def header_length(data: bytes) -> int:
    offset = 0
    while data[offset : offset + 1] == b"%":
        offset = data.index(b"\n", offset) + 1
    return offset


def check_facts(events, sensor_size, facts):
    n, t_first, t_last, x_range, y_range, on, size, _ = facts
    assert len(events) == n
    assert (int(events["t"][0]), int(events["t"][-1])) == (t_first, t_last)
    assert (int(events["x"].min()), int(events["x"].max())) == x_range
    assert (int(events["y"].min()), int(events["y"].max())) == y_range
    assert int(np.count_nonzero(events["p"])) == on
    assert np.all(np.diff(events["t"]) >= 0)
    assert tuple(sensor_size) == size


@pytest.mark.parametrize("name", sorted(FACTS))
def test_every_vendored_sample_matches_sources(dvs_dir, name):
    events, sensor_size = read_events(dvs_dir / name)
    check_facts(events, sensor_size, FACTS[name])
    opened = open_event_file(dvs_dir / name)
    assert tuple(opened.sensor_size) == FACTS[name][6]
    assert opened.sensor_size_from == FACTS[name][7]


def test_nmnist_files_match_manifest(nmnist_root, nmnist_manifest):
    for row in nmnist_manifest:
        events, sensor_size = read_events(nmnist_root / row["path"])
        assert sensor_size == (34, 34, 2)
        assert len(events) == row["n_events"]
        assert (events["t"][0], events["t"][-1]) == (row["t_first_us"], row["t_last_us"])
        assert np.count_nonzero(events["p"]) == row["n_on_events"]


def test_dat_equals_its_reference_array_exactly(dvs_dir):
    events, _ = read_events(dvs_dir / "ncars_sample_b.dat")
    reference = np.load(dvs_dir / "ncars_sample_b.reference.npy", allow_pickle=False)
    for field in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(events[field], reference[field].astype(events[field].dtype), err_msg=field)


def test_evt3_matches_reference_xyp_and_its_times_only_up_to_the_documented_drift(dvs_dir):
    events, _ = read_events(dvs_dir / "gen41_evt3_small.raw")
    reference = np.load(dvs_dir / "gen41_evt3_small.reference.npy", allow_pickle=False)
    for field in ("x", "y", "p"):
        np.testing.assert_array_equal(events[field], reference[field].astype(events[field].dtype), err_msg=field)
    drift = reference["t"] - events["t"]
    assert np.all(drift % 4096 == 0)
    assert drift.min() == 0 and drift.max() == EVT3_DRIFT_US
    assert np.all(np.diff(events["t"]) >= 0)


def test_the_full_evt3_sample_in_shared_data(shared_data):
    folder = shared_data / "dvs_samples" / "prophesee_evt3"
    events, sensor_size = read_events(folder / "gen41_evt3_sample.raw")
    check_facts(events, sensor_size, (219596, 11718656, 11727457, (0, 1279), (0, 719), 115532, (1280, 720, 2), ""))
    reference = np.load(folder / "gen41_evt3_sample.reference.npy", allow_pickle=False)
    for field in ("x", "y", "p"):
        np.testing.assert_array_equal(events[field], reference[field].astype(events[field].dtype))
    drift = reference["t"] - events["t"]
    assert np.all(drift % 4096 == 0) and drift.max() == EVT3_DRIFT_US


def test_dat_and_evt2_equal_expelliarmus_and_its_evt3_drifts(dvs_dir):
    expelliarmus = pytest.importorskip("expelliarmus")
    for name, encoding in (("ncars_sample_a.dat", "dat"), ("gen3_evt2_sample.raw", "evt2")):
        ours, _ = read_events(dvs_dir / name)
        theirs = expelliarmus.Wizard(encoding=encoding).read(dvs_dir / name)
        for field in ("t", "x", "y", "p"):
            np.testing.assert_array_equal(ours[field], theirs[field].astype(ours[field].dtype), err_msg=f"{name} {field}")
    ours, _ = read_events(dvs_dir / "gen41_evt3_small.raw")
    theirs = expelliarmus.Wizard(encoding="evt3").read(dvs_dir / "gen41_evt3_small.raw")
    assert (theirs["t"] - ours["t"]).max() == EVT3_DRIFT_US  # why we decode EVT 3.0 ourselves


@pytest.mark.parametrize("name", sorted(FACTS))
def test_chunked_reading_equals_whole_file_reading(dvs_dir, name):
    whole, _ = read_events(dvs_dir / name)
    if len(whole) < 4500:
        sizes = (1, 7, 997, 1 << 16)
    elif len(whole) < 20_000:
        sizes = (7, 997, 1 << 16)
    else:
        sizes = (333, 4099, 1 << 16)
    for chunk_events in sizes:
        chunks = list(open_event_file(dvs_dir / name).chunks(chunk_events))
        assert all(0 < len(c) <= chunk_events for c in chunks), chunk_events
        np.testing.assert_array_equal(np.concatenate(chunks), whole, err_msg=f"chunk_events={chunk_events}")


# --- synthetic EVT 3.0 words: vectors and the 24-bit time wrap --------------------------------


def evt3_words(*words: tuple[int, int]) -> bytes:
    return np.array([(kind << 12) | value for kind, value in words], dtype="<u2").tobytes()


def test_evt3_vectors_and_time_wrap():
    raw = evt3_words(
        (8, 4095), (6, 5), (0, 3),  # TIME_HIGH 4095, TIME_LOW 5, y = 3
        (2, 7 | 1 << 11),  # one ON event at x = 7
        (3, 10),  # vector base x = 10, OFF
        (4, 0b101),  # VECT_12: x = 10, 12; base -> 22
        (5, 0b1),  # VECT_8: x = 22
        (8, 0), (6, 1),  # TIME_HIGH wraps to 0: + 2**24 µs
        (2, 8),
    )
    events, state = decode_evt3(raw, Evt3State(), (64, 64))
    before_wrap = 4095 * 4096 + 5
    assert events["x"].tolist() == [7, 10, 12, 22, 8]
    assert events["y"].tolist() == [3] * 5
    assert events["p"].tolist() == [True, False, False, False, False]
    assert events["t"].tolist() == [before_wrap] * 4 + [(1 << 24) + 1]
    assert state.loops == 1 and state.base_x == 30
    # the same words one at a time give the same events
    pieces, state = [], Evt3State()
    for i in range(0, len(raw), 2):
        part, state = decode_evt3(raw[i : i + 2], state, (64, 64))
        pieces.append(part)
    np.testing.assert_array_equal(np.concatenate(pieces), events)


def test_evt3_time_high_stepping_back_is_damage():
    raw = evt3_words((8, 100), (0, 1), (2, 1), (8, 99), (2, 2))
    with pytest.raises(DataError, match="TIME_HIGH steps back from 100 to 99") as info:
        decode_evt3(raw, Evt3State(), (64, 64), "f.raw", offset=1000)
    assert info.value.offset == 1000 + 2 * 3


# --- damaged files ------------------------------------------------------------------------


def collect_until_error(path, chunk_events):
    """The events yielded before the DataError, and the error."""
    got = []
    with pytest.raises(DataError) as info:
        for chunk in open_event_file(path, infer_sensor_size=False).chunks(chunk_events):
            got.append(chunk)
    return (np.concatenate(got) if got else np.empty(0)), info.value


def aedat4_packet_starts(data: bytes) -> list[int]:
    (header_size,) = struct.unpack("<i", data[14:18])
    offset, starts = 18 + header_size, []
    while offset + 8 <= len(data):
        size = struct.unpack("<ii", data[offset : offset + 8])[1]
        if size < 0:  # the file's data table, after the last packet
            break
        starts.append(offset)
        offset += 8 + size
    return starts


# name, where to cut (bytes from the start of the data), expected offset of the error
@pytest.mark.parametrize(
    "name, word_bytes",
    [("sample_nmnist.bin", 5), ("ncars_sample_b.dat", 8), ("gen41_evt3_small.raw", 2), ("gen3_evt2_sample.raw", 4)],
)
def test_file_cut_inside_a_word(tmp_path, dvs_dir, name, word_bytes):
    data = (dvs_dir / name).read_bytes()
    start = header_length(data) + (2 if name.endswith(".dat") else 0)
    whole_words = (len(data) - start) // word_bytes // 2
    cut = start + whole_words * word_bytes + word_bytes - 1
    path = tmp_path / name
    path.write_bytes(data[:cut])
    with pytest.raises(DataError) as info:
        read_events(path)
    assert info.value.offset == start + whole_words * word_bytes
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert f"at byte {info.value.offset}" in str(info.value)
    # chunked: everything before the damage is yielded first, identical to the intact file's start
    intact, _ = read_events(dvs_dir / name)
    got, error = collect_until_error(path, chunk_events=500)
    assert error.offset == info.value.offset and len(got) > 0
    np.testing.assert_array_equal(got, intact[: len(got)])


def test_aedat4_cut_inside_a_packet(tmp_path, dvs_dir):
    data = (dvs_dir / "sample.aedat4").read_bytes()
    cut = 500_000
    packet = max(s for s in aedat4_packet_starts(data) if s < cut)
    path = tmp_path / "cut.aedat4"
    path.write_bytes(data[:cut])
    intact, _ = read_events(dvs_dir / "sample.aedat4")
    got, error = collect_until_error(path, chunk_events=5000)
    assert error.offset == packet and "ends inside a packet" in error.reason
    assert len(got) > 50_000  # every good packet before the cut
    np.testing.assert_array_equal(got, intact[: len(got)])


def test_aedat4_corrupted_packet(tmp_path, dvs_dir):
    data = bytearray((dvs_dir / "sample.aedat4").read_bytes())
    starts = aedat4_packet_starts(bytes(data))
    victim = starts[60]
    data[victim + 40 : victim + 400] = bytes(360)  # zero the middle of a compressed payload
    path = tmp_path / "corrupt.aedat4"
    path.write_bytes(bytes(data))
    got, error = collect_until_error(path, chunk_events=1000)
    assert error.offset == victim and "cannot decode" in error.reason
    assert len(got) > 0


def overwrite(data: bytes, offset: int, word: bytes) -> bytes:
    return data[:offset] + word + data[offset + len(word) :]


@pytest.mark.parametrize(
    "name, word_bytes, within, bad_bytes, message",
    [
        ("sample_nmnist.bin", 5, 0, bytes([200]), "outside the 34x34"),
        ("ncars_sample_b.dat", 8, 4, struct.pack("<I", 0xF0000000), "p=15"),  # the address half
        ("gen3_evt2_sample.raw", 4, 0, struct.pack("<I", 5 << 28), "unknown EVT 2.0 word type 5"),
        ("gen41_evt3_small.raw", 2, 0, struct.pack("<H", 0xC << 12), "unknown EVT 3.0 word type 12"),
    ],
)
def test_corrupted_word_mid_stream(tmp_path, dvs_dir, name, word_bytes, within, bad_bytes, message):
    data = (dvs_dir / name).read_bytes()
    start = header_length(data) + (2 if name.endswith(".dat") else 0)
    where = start + word_bytes * ((len(data) - start) // word_bytes * 2 // 3)
    path = tmp_path / name
    path.write_bytes(overwrite(data, where + within, bad_bytes))
    got, error = collect_until_error(path, chunk_events=64)
    assert error.offset == where and message in error.reason and error.path == str(path)
    assert len(got) > 0


def test_dat_timestamp_stepping_back_is_damage(tmp_path, dvs_dir):
    data = (dvs_dir / "ncars_sample_a.dat").read_bytes()
    where = header_length(data) + 2 + 8 * 1000
    t_before = struct.unpack("<I", data[where - 8 : where - 4])[0]
    path = tmp_path / "back.dat"
    path.write_bytes(overwrite(data, where, struct.pack("<I", t_before - 10)))
    with pytest.raises(DataError, match="steps back") as info:
        read_events(path)
    assert info.value.offset == where


# --- format detection ---------------------------------------------------------------------


def copy_as(tmp_path, source, name) -> object:
    path = tmp_path / name
    path.write_bytes(source.read_bytes())
    return path


@pytest.mark.parametrize(
    "source, name, message",
    [
        ("gen41_evt3_small.raw", "x.dat", "the name says Prophesee DAT (.dat) but the header says Prophesee RAW EVT 3.0"),
        ("ncars_sample_a.dat", "x.raw", "does not say its event format"),
        ("sample.aedat4", "x.bin", "the name says N-MNIST (.bin) but the header says AEDAT 4.0"),
        ("sample_nmnist.bin", "x.aedat4", "does not start with that format's header"),
        ("gen3_evt2_sample.raw", "x.aedat4", "the header says Prophesee RAW EVT 2.0"),
        ("gen41_evt3_small.raw", "x.xyz", "unknown event file format '.xyz'; its header looks like Prophesee RAW EVT 3.0"),
        ("sample_nmnist.bin", "x.txt", "unknown event file format '.txt' (supported: "),
    ],
)
def test_wrong_or_unknown_format_lists_the_supported_ones(tmp_path, dvs_dir, source, name, message):
    path = copy_as(tmp_path, dvs_dir / source, name)
    with pytest.raises(DataError) as info:
        read_events(path)
    text = str(info.value)
    assert message in text and str(path) in text
    for fmt in SUPPORTED:
        assert fmt in text


def rewrite_header(data: bytes, lines: list[str]) -> bytes:
    return "".join(f"% {line}\n" for line in lines).encode() + data[header_length(data) :]


def test_raw_header_variants(tmp_path, dvs_dir):
    data = (dvs_dir / "gen41_evt3_small.raw").read_bytes()
    expected, _ = read_events(dvs_dir / "gen41_evt3_small.raw")
    variants = {
        "format.raw": (["format EVT3;height=720;width=1280", "end"], (1280, 720, 2)),
        "geometry.raw": (["evt 3.0", "geometry 1280x720"], (1280, 720, 2)),
    }
    for name, (lines, size) in variants.items():
        path = tmp_path / name
        path.write_bytes(rewrite_header(data, lines))
        events, sensor_size = read_events(path)
        assert sensor_size == size
        np.testing.assert_array_equal(events, expected)
    unsupported = tmp_path / "evt21.raw"
    unsupported.write_bytes(rewrite_header(data, ["evt 2.1", "geometry 640x480"]))
    with pytest.raises(DataError, match="Prophesee RAW EVT 2.1 is not supported"):
        read_events(unsupported)
    small = tmp_path / "small.raw"  # a declared sensor smaller than the events: damage, not clipping
    small.write_bytes(rewrite_header(data, ["evt 3.0", "geometry 640x480"]))
    with pytest.raises(DataError, match="outside the 640x480 sensor"):
        read_events(small)


def test_dat_header_with_a_sensor_size(tmp_path, dvs_dir):
    data = (dvs_dir / "ncars_sample_a.dat").read_bytes()
    expected, _ = read_events(dvs_dir / "ncars_sample_a.dat")
    path = tmp_path / "sized.dat"
    path.write_bytes(rewrite_header(data, ["Data file containing CD events.", "Height 240", "Version 2", "Width 304"]))
    opened = open_event_file(path)
    assert opened.sensor_size == (304, 240, 2) and opened.sensor_size_from == "header"
    np.testing.assert_array_equal(read_events(path)[0], expected)
    path.write_bytes(rewrite_header(data, ["Version 1"]))
    with pytest.raises(DataError, match="DAT version 1 is not supported"):
        read_events(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_events(tmp_path / "absent.raw")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        read_events(tmp_path / "empty.bin")
    (tmp_path / "empty.aedat4").write_bytes(b"")
    with pytest.raises(DataError, match="does not start with that format's header"):
        read_events(tmp_path / "empty.aedat4")


@pytest.mark.parametrize("module, what", [("aedat", "reading AEDAT 4.0 files needs aedat")])
def test_a_missing_extra_is_one_line_naming_it(capsys, monkeypatch, dvs_dir, module, what):
    from evsim.cli.main import main

    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    assert main(["info", str(dvs_dir / "sample.aedat4")]) == 2
    err = capsys.readouterr().err
    assert err == f"evsim info: error: {what}: pip install 'evsim[data]'\n"
