"""Prophesee event files: DAT, RAW EVT 2.0 and RAW EVT 3.0, decoded chunk by chunk in numpy.

All three start with a text header of ``%`` lines, then fixed-size little-endian words:

- **DAT** (``.dat``): after the header one byte event type and one byte event size (8), then
  8-byte events: uint32 timestamp (µs), uint32 with x = bits 0-13, y = bits 14-27, p = bits 28-31.
- **EVT 2.0** (``.raw``, ``% evt 2.0``): 32-bit words, type in bits 28-31: 0 CD_OFF, 1 CD_ON
  (timestamp low 6 bits in 22-27, x in 11-21, y in 0-10), 8 EV_TIME_HIGH (bits 0-27, the upper
  28 bits of a 34-bit µs time), 10 EXT_TRIGGER, 14 OTHERS, 15 CONTINUED.
- **EVT 3.0** (``.raw``, ``% evt 3.0``): 16-bit words, type in bits 12-15: 0 ADDR_Y (y in 0-10),
  2 ADDR_X (x in 0-10, polarity bit 11: one event), 3 VECT_BASE_X (x and polarity of the next
  vector), 4 VECT_12 / 5 VECT_8 (a mask of 12 / 8 pixels from the base x, which then advances by
  12 / 8), 6 TIME_LOW and 8 TIME_HIGH (the low and high 12 bits of a 24-bit µs time), 7 and 15
  CONTINUED, 10 EXT_TRIGGER, 14 OTHERS.

These decoders are ours rather than expelliarmus' (which tonic uses) for three reasons, each
checked on the vendored samples: its EVT 3.0 decoder treats every decrease of TIME_LOW as a
wrap, so its timestamps drift ahead by multiples of 4096 µs (up to +45 ms on the samples; we
follow the spec, t = TIME_HIGH << 12 | TIME_LOW, as SOURCES.md documents); it reads a file cut
mid-word or a corrupted word without a complaint (x = 16383, p = 15); and it reports no byte
offsets. On DAT and EVT 2.0 our output equals expelliarmus' exactly (tests/test_formats.py).

Each decoder is a pure function of a chunk of whole words and the state the previous chunk left,
so a file decodes identically whatever the chunk size. A time counter that wraps (DAT 2**32 µs,
EVT 2.0 2**34 µs, EVT 3.0 2**24 µs) is unwrapped when it falls by more than half its range; a
smaller fall can only be damage and is a :class:`DataError` at the offending word, as are unknown
word types, coordinates outside the sensor, and polarities other than 0 and 1. Events before the
first TIME_HIGH word (EVT) have no time and are dropped, as Metavision's decoders do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evsim.events import EVENT_DTYPE, check_time_order
from evsim.errors import DataError

HEADER_LIMIT = 1 << 20
"""A ``%`` header longer than this is not a header."""

# Sensor sizes of the Prophesee camera generations, for headers that name only their plugin.
PLUGIN_SENSOR_SIZES = (
    ("gen31", (640, 480)),
    ("gen3", (640, 480)),
    ("gen41", (1280, 720)),
    ("gen4", (1280, 720)),
    ("imx636", (1280, 720)),
    ("imx646", (1280, 720)),
    ("genx320", (320, 320)),
    ("imx8", (320, 320)),
)


@dataclass(frozen=True)
class Header:
    """The ``%`` lines at the start of a Prophesee file and where the binary data begins."""

    lines: tuple[str, ...]
    data_offset: int

    def value(self, key: str) -> str | None:
        """The text after ``% key`` in the first line that has it (key compared case-blind)."""
        for line in self.lines:
            parts = line.split(None, 1)
            if parts and parts[0].lower() == key.lower():
                return parts[1].strip() if len(parts) > 1 else ""
        return None

    def evt_version(self) -> str | None:
        """``"2.0"``, ``"3.0"``, ... from ``% evt 3.0`` or ``% format EVT3;...``; None if absent."""
        evt = self.value("evt")
        if evt is not None:
            return evt
        fmt = self.value("format")
        if fmt is not None:
            name = fmt.split(";", 1)[0].strip().upper()
            if name.startswith("EVT") and name[3:].isdigit():
                digits = name[3:]
                return f"{digits[0]}.{digits[1:] or '0'}"
            return name
        return None

    def sensor_size(self) -> tuple[int, int] | None:
        """(width, height) from ``% geometry WxH``, ``% format ...;width=W;height=H``,
        ``% Width``/``% Height`` (DAT) or the camera plugin's name; None if none says."""
        geometry = self.value("geometry")
        if geometry:
            w, _, h = geometry.lower().partition("x")
            if w.strip().isdigit() and h.strip().isdigit():
                return int(w), int(h)
        fmt = self.value("format")
        if fmt:
            fields = dict(
                part.split("=", 1) for part in fmt.split(";")[1:] if "=" in part
            )
            if fields.get("width", "").isdigit() and fields.get("height", "").isdigit():
                return int(fields["width"]), int(fields["height"])
        width, height = self.value("width"), self.value("height")
        if width and height and width.isdigit() and height.isdigit():
            return int(width), int(height)
        plugin = (self.value("plugin_name") or "").lower()
        for key, size in PLUGIN_SENSOR_SIZES:
            if key in plugin:
                return size
        return None


def read_header(path, fh) -> Header:
    """Read the ``%`` header lines from the start of the open file ``fh`` (left after them).

    The header ends at the first byte that does not start a ``%`` line, or after ``% end``.
    """
    fh.seek(0)
    lines: list[str] = []
    offset = 0
    while True:
        first = fh.read(1)
        if first != b"%":
            break
        line = first + fh.readline(HEADER_LIMIT)
        if not line.endswith(b"\n") or offset + len(line) > HEADER_LIMIT:
            raise DataError("the '%' header does not end (file cut inside its header?)", path, offset)
        offset += len(line)
        text = line[1:].decode("latin-1").strip()
        if text.lower() == "end":
            break
        lines.append(text)
    fh.seek(offset)
    return Header(tuple(lines), offset)


def _forward_fill(mask: np.ndarray, values: np.ndarray, initial: int) -> np.ndarray:
    """At each position, the value at the last position <= it where ``mask`` holds, else ``initial``."""
    last = np.maximum.accumulate(np.where(mask, np.arange(len(mask)), -1))
    return np.where(last >= 0, values[np.maximum(last, 0)], initial)


def _unwrap(path, raw: np.ndarray, positions: np.ndarray, previous: int, loops: int,
            period: int, offset: int, word_bytes: int, what: str) -> tuple[np.ndarray, int]:
    """``raw`` values of a wrapping counter (period ``period``) made monotonic: a fall of more
    than half the period is a wrap, a smaller one a DataError. ``previous`` is the last raw value
    before the chunk (-1: none), ``loops`` the wraps so far. Returns the unwrapped values and the
    wraps at the chunk's end."""
    if len(raw) == 0:
        return raw.astype(np.int64), loops
    before = np.concatenate(([previous if previous >= 0 else raw[0]], raw[:-1]))
    fall = before - raw
    wraps = fall > period // 2
    back = (fall > 0) & ~wraps
    if back.any():
        k = int(np.argmax(back))
        raise DataError(
            f"{what} steps back from {int(before[k])} to {int(raw[k])}; the file is damaged",
            path,
            offset + word_bytes * int(positions[k]),
        )
    cumulative = loops + np.cumsum(wraps)
    return raw + period * cumulative, int(cumulative[-1])


def _check_events(path, x, y, p, t, positions, sensor, last_t, offset, word_bytes, fmt):
    """Coordinates inside the sensor, polarity 0/1, time never decreasing (else DataError)."""
    width, height = sensor if sensor is not None else (None, None)
    bad = (p > 1) | (x < 0) | (y < 0)
    if width is not None:
        bad |= (x >= width) | (y >= height)
    if bad.any():
        k = int(np.argmax(bad))
        where = f" outside the {width}x{height} sensor" if width is not None else ""
        raise DataError(
            f"{fmt} event at x={int(x[k])}, y={int(y[k])}, p={int(p[k])}{where} "
            "(polarity must be 0 or 1); the file is damaged",
            path,
            offset + word_bytes * int(positions[k]),
        )
    check_time_order(t, last_t, path, lambda k: offset + word_bytes * int(positions[k]),
                     f"{fmt} event time", "the file is damaged")


def _events(x, y, t, p) -> np.ndarray:
    events = np.empty(len(t), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p.astype(bool)
    return events


# --- DAT ------------------------------------------------------------------------------------

DAT_EVENT_BYTES = 8
DAT_EVENT_TYPES = (0, 12)  # Event2d (ATIS TD, as in N-CARS) and EventCD: the same 8-byte layout
DAT_TIME_PERIOD = 1 << 32


@dataclass(frozen=True)
class DatState:
    last_raw_t: int = -1
    loops: int = 0
    last_t: int = 0


def decode_dat(raw: bytes, state: DatState, sensor, path=None, offset: int = 0) -> tuple[np.ndarray, DatState]:
    """Decode whole 8-byte DAT events at byte ``offset`` of the file."""
    words = np.frombuffer(raw, dtype="<u4").reshape(-1, 2).astype(np.int64)
    positions = np.arange(len(words))
    t, loops = _unwrap(path, words[:, 0], positions, state.last_raw_t, state.loops,
                       DAT_TIME_PERIOD, offset, DAT_EVENT_BYTES, "DAT timestamp")
    address = words[:, 1]
    x, y, p = address & 0x3FFF, (address >> 14) & 0x3FFF, address >> 28
    _check_events(path, x, y, p, t, positions, sensor, state.last_t, offset, DAT_EVENT_BYTES, "DAT")
    if not len(words):
        return _events(x, y, t, p), state
    return _events(x, y, t, p), DatState(int(words[-1, 0]), loops, int(t[-1]))


# --- EVT 2.0 --------------------------------------------------------------------------------

EVT2_WORD_BYTES = 4
EVT2_CD_OFF, EVT2_CD_ON, EVT2_TIME_HIGH = 0, 1, 8
EVT2_KNOWN_TYPES = (0, 1, 8, 10, 14, 15)
EVT2_TIME_HIGH_PERIOD = 1 << 28


@dataclass(frozen=True)
class Evt2State:
    time_high_raw: int = -1  # -1: no TIME_HIGH yet
    loops: int = 0
    last_t: int = 0


def decode_evt2(raw: bytes, state: Evt2State, sensor, path=None, offset: int = 0) -> tuple[np.ndarray, Evt2State]:
    """Decode whole 32-bit EVT 2.0 words at byte ``offset`` of the file."""
    words = np.frombuffer(raw, dtype="<u4").astype(np.int64)
    kind = words >> 28
    _check_types(path, kind, EVT2_KNOWN_TYPES, offset, EVT2_WORD_BYTES, "EVT 2.0")
    is_high = kind == EVT2_TIME_HIGH
    high_at = np.flatnonzero(is_high)
    high, loops = _unwrap(path, words[high_at] & 0xFFFFFFF, high_at, state.time_high_raw, state.loops,
                          EVT2_TIME_HIGH_PERIOD, offset, EVT2_WORD_BYTES, "EVT 2.0 TIME_HIGH")
    initial_high = -1 if state.time_high_raw < 0 else state.time_high_raw + EVT2_TIME_HIGH_PERIOD * state.loops
    high_full = np.zeros(len(words), dtype=np.int64)
    high_full[high_at] = high
    current_high = _forward_fill(is_high, high_full, initial_high)
    is_cd = ((kind == EVT2_CD_OFF) | (kind == EVT2_CD_ON)) & (current_high >= 0)
    cd = np.flatnonzero(is_cd)
    w = words[cd]
    t = (current_high[cd] << 6) | ((w >> 22) & 0x3F)
    x, y, p = (w >> 11) & 0x7FF, w & 0x7FF, kind[cd]
    _check_events(path, x, y, p, t, cd, sensor, state.last_t, offset, EVT2_WORD_BYTES, "EVT 2.0")
    new_state = Evt2State(
        time_high_raw=int(words[high_at[-1]] & 0xFFFFFFF) if len(high_at) else state.time_high_raw,
        loops=loops,
        last_t=int(t[-1]) if len(t) else state.last_t,
    )
    return _events(x, y, t, p), new_state


def _check_types(path, kind, known, offset, word_bytes, fmt) -> None:
    unknown = ~np.isin(kind, known)
    if unknown.any():
        k = int(np.argmax(unknown))
        raise DataError(
            f"unknown {fmt} word type {int(kind[k])} (known: {', '.join(map(str, known))}); "
            "the file is damaged or not in this format",
            path,
            offset + word_bytes * k,
        )


# --- EVT 3.0 --------------------------------------------------------------------------------

EVT3_WORD_BYTES = 2
EVT3_ADDR_Y, EVT3_ADDR_X, EVT3_VECT_BASE_X, EVT3_VECT_12, EVT3_VECT_8 = 0, 2, 3, 4, 5
EVT3_TIME_LOW, EVT3_TIME_HIGH = 6, 8
EVT3_KNOWN_TYPES = (0, 2, 3, 4, 5, 6, 7, 8, 10, 14, 15)
EVT3_TIME_HIGH_PERIOD = 1 << 12


@dataclass(frozen=True)
class Evt3State:
    time_high_raw: int = -1  # -1: no TIME_HIGH yet
    loops: int = 0
    time_low: int = 0
    y: int = -1  # -1: no ADDR_Y yet
    base_x: int = -1  # -1: no VECT_BASE_X yet (already advanced past earlier vectors)
    polarity: int = 0
    last_t: int = 0


def decode_evt3(raw: bytes, state: Evt3State, sensor, path=None, offset: int = 0) -> tuple[np.ndarray, Evt3State]:
    """Decode whole 16-bit EVT 3.0 words at byte ``offset`` of the file.

    Every word type is a register write, so each event's time, row, base column and polarity are
    the last values written before it: forward fills over the chunk, seeded with ``state``.
    """
    words = np.frombuffer(raw, dtype="<u2").astype(np.int64)
    n = len(words)
    kind, value = words >> 12, words & 0xFFF
    _check_types(path, kind, EVT3_KNOWN_TYPES, offset, EVT3_WORD_BYTES, "EVT 3.0")

    is_high = kind == EVT3_TIME_HIGH
    high_at = np.flatnonzero(is_high)
    high, loops = _unwrap(path, value[high_at], high_at, state.time_high_raw, state.loops,
                          EVT3_TIME_HIGH_PERIOD, offset, EVT3_WORD_BYTES, "EVT 3.0 TIME_HIGH")
    high_full = np.zeros(n, dtype=np.int64)
    high_full[high_at] = high
    initial_high = -1 if state.time_high_raw < 0 else state.time_high_raw + EVT3_TIME_HIGH_PERIOD * state.loops
    current_high = _forward_fill(is_high, high_full, initial_high)
    current_low = _forward_fill(kind == EVT3_TIME_LOW, value, state.time_low)
    current_y = _forward_fill(kind == EVT3_ADDR_Y, value & 0x7FF, state.y)

    # Vectors: the base column advances by 12 or 8 after each vector word.
    is_base = kind == EVT3_VECT_BASE_X
    advance = np.where(kind == EVT3_VECT_12, 12, np.where(kind == EVT3_VECT_8, 8, 0))
    advanced = np.cumsum(advance)  # inclusive
    base_value = _forward_fill(is_base, value & 0x7FF, state.base_x)
    advanced_at_base = _forward_fill(is_base, advanced, 0)
    base_x = base_value + (advanced - advance) - advanced_at_base  # column of this vector's bit 0
    polarity = _forward_fill(is_base, value >> 11, state.polarity)
    has_base = _forward_fill(is_base, np.ones(n, dtype=np.int64), int(state.base_x >= 0)) > 0

    t_word = current_high * EVT3_TIME_HIGH_PERIOD + current_low
    timed = (current_high >= 0) & (current_y >= 0)

    single = np.flatnonzero((kind == EVT3_ADDR_X) & timed)
    vectors = np.flatnonzero(((kind == EVT3_VECT_12) | (kind == EVT3_VECT_8)) & timed & has_base)
    bits = (value[vectors, None] >> np.arange(12)) & 1
    bits[kind[vectors] == EVT3_VECT_8, 8:] = 0
    vector_row, vector_bit = np.nonzero(bits)
    vector_word = vectors[vector_row]

    position = np.concatenate([single, vector_word])
    sub = np.concatenate([np.zeros(len(single), dtype=np.int64), vector_bit])
    order = np.lexsort((sub, position))  # word order, then bit order within a vector
    position = position[order]
    x = np.concatenate([value[single] & 0x7FF, base_x[vector_word] + vector_bit])[order]
    p = np.concatenate([value[single] >> 11, polarity[vector_word]])[order]
    y = current_y[position]
    t = t_word[position]
    _check_events(path, x, y, p, t, position, sensor, state.last_t, offset, EVT3_WORD_BYTES, "EVT 3.0")

    if n == 0:
        return _events(x, y, t, p), state
    new_state = Evt3State(
        time_high_raw=int(value[high_at[-1]]) if len(high_at) else state.time_high_raw,
        loops=loops,
        time_low=int(current_low[-1]),
        y=int(current_y[-1]),
        base_x=int(base_value[-1] + advanced[-1] - advanced_at_base[-1]) if has_base[-1] else -1,
        polarity=int(polarity[-1]),
        last_t=int(t[-1]) if len(t) else state.last_t,
    )
    return _events(x, y, t, p), new_state


@dataclass(frozen=True)
class WordFormat:
    """One Prophesee word format: its name, word size, decoder and initial decoder state."""

    name: str
    word_bytes: int
    decode: object
    initial_state: object


DAT = WordFormat("Prophesee DAT", DAT_EVENT_BYTES, decode_dat, DatState())
EVT2 = WordFormat("Prophesee RAW EVT 2.0", EVT2_WORD_BYTES, decode_evt2, Evt2State())
EVT3 = WordFormat("Prophesee RAW EVT 3.0", EVT3_WORD_BYTES, decode_evt3, Evt3State())


def iter_word_chunks(path, fmt: WordFormat, data_offset: int, sensor, chunk_words: int):
    """Decode the file from ``data_offset`` on, ``chunk_words`` words per read; yields event arrays.

    A file that ends inside a word is a DataError at the start of that partial word, raised after
    the whole words before it have been yielded.
    """
    state = fmt.initial_state
    offset = data_offset
    read_bytes = max(1, chunk_words) * fmt.word_bytes
    with open(path, "rb") as fh:
        fh.seek(data_offset)
        while True:
            raw = fh.read(read_bytes)
            if not raw:
                return
            whole = len(raw) - len(raw) % fmt.word_bytes
            if whole:
                events, state = fmt.decode(raw[:whole], state, sensor, path, offset)
                yield events
            if whole != len(raw):
                raise DataError(
                    f"the file ends {len(raw) - whole} bytes into a {fmt.word_bytes}-byte "
                    f"{fmt.name} word (cut short?)",
                    path,
                    offset + whole,
                )
            offset += whole

