"""Augmentation of real event recordings, and the validation split held out of the training data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evsim.datasets.augment import (EventAugment, augment, drop_events, jitter_time, rotate_and_scale, stretch_time,
                                    translate)
from evsim.datasets.samples import load_samples, split_validation, stratified_holdout
from evsim.errors import InputError
from evsim.events import make_events

SENSOR = (34, 34, 2)


def some_events(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 300_000, n)),
                       rng.integers(0, 2, n).astype(bool))


def test_translation_drops_what_leaves_the_sensor():
    events = make_events([0, 5, 33, 33], [0, 5, 33, 10], [1, 2, 3, 4], [0, 1, 0, 1])
    moved = translate(events, 2, -1, SENSOR)
    assert moved["x"].tolist() == [7] and moved["y"].tolist() == [4] and moved["t"].tolist() == [2]
    assert moved["p"].tolist() == [True]
    assert np.array_equal(translate(events, 0, 0, SENSOR), events)


def test_rotation_and_scaling_about_the_sensor_centre():
    # (16.5, 16.5) is the centre of a 34 x 34 sensor: a quarter turn takes (33, 16) to (17, 33)
    # (y down), doubling takes (20, 16) to (24, 16) after rounding (23.5 + 0.5 -> 24, half to even
    # gives 24), and (0, 0) leaves the sensor
    events = make_events([33, 20, 0], [16, 16, 0], [1, 2, 3], [0, 1, 0])
    turned = rotate_and_scale(events, 90.0, 1.0, SENSOR)
    assert (turned["x"][0], turned["y"][0]) == (17, 33) and turned["t"].tolist() == [1, 2, 3]
    doubled = rotate_and_scale(events, 0.0, 2.0, SENSOR)
    assert doubled["x"].tolist() == [24] and doubled["y"].tolist() == [16] and doubled["t"].tolist() == [2]
    assert np.array_equal(rotate_and_scale(events, 0.0, 1.0, SENSOR), events)
    # a full turn in four steps brings every event back
    some = some_events(200)
    back = some
    for _ in range(4):
        back = rotate_and_scale(back, 90.0, 1.0, SENSOR)
    assert np.array_equal(back, some)


def test_rotation_and_scaling_draws_only_when_asked():
    # off by default, without consuming draws: runs made before these ranges existed replay
    events = some_events()
    plain = augment(events, EventAugment(), np.random.default_rng(3), SENSOR)
    assert np.array_equal(plain, augment(events, EventAugment(rotate=0.0, scale=0.0), np.random.default_rng(3), SENSOR))
    wide = augment(events, EventAugment(rotate=15.0, scale=0.15), np.random.default_rng(3), SENSOR)
    assert not np.array_equal(plain, wide)
    assert wide["x"].min() >= 0 and wide["x"].max() < 34 and wide["y"].min() >= 0 and wide["y"].max() < 34
    for bad in (dict(rotate=-1.0), dict(rotate=90.0), dict(scale=0.6)):
        with pytest.raises(InputError):
            EventAugment(**bad)


def test_dropout_jitter_and_stretch():
    events = some_events()
    rng = np.random.default_rng(1)
    kept = drop_events(events, 0.25, rng)
    assert 0.7 < len(kept) / len(events) < 0.8
    at = make_events(np.zeros(4000), np.zeros(4000), np.full(4000, 50_000), np.zeros(4000, bool))
    jittered = jitter_time(at, 1000.0, rng)
    assert len(jittered) == 4000 and np.all(np.diff(jittered["t"]) >= 0)
    assert 950 < np.std(jittered["t"]) < 1050 and abs(np.mean(jittered["t"]) - 50_000) < 100
    early = jitter_time(make_events(np.zeros(4000), np.zeros(4000), np.zeros(4000), np.zeros(4000, bool)), 1000.0, rng)
    assert 0.45 < len(early) / 4000 < 0.55 and early["t"].min() >= 0  # pushed before 0: dropped
    stretched = stretch_time(events, 1.1)
    assert np.array_equal(stretched["t"], np.rint(events["t"] * 1.1).astype(np.int64))
    assert np.array_equal(stretched[["x", "y", "p"]], events[["x", "y", "p"]])


def test_augment_is_seeded_and_keeps_events_on_the_sensor():
    events = some_events()
    config = EventAugment()
    a = augment(events, config, np.random.default_rng(7), SENSOR)
    b = augment(events, config, np.random.default_rng(7), SENSOR)
    c = augment(events, config, np.random.default_rng(8), SENSOR)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for out in (a, c):
        assert out["x"].min() >= 0 and out["x"].max() < 34 and out["y"].min() >= 0 and out["y"].max() < 34
        assert np.all(np.diff(out["t"]) >= 0) and out["t"].min() >= 0
        assert 0.5 * len(events) < len(out) <= len(events)
    with pytest.raises(InputError):
        EventAugment(drop=1.0)


def test_augmented_training_inputs_change_per_draw_not_per_run(nmnist_root):
    samples = load_samples("nmnist", nmnist_root, "test", 4)
    plain = samples.inputs(np.arange(4), 20, np.random.default_rng(0))
    augmented = dataclasses.replace(samples, event_augment=EventAugment())
    first = augmented.inputs(np.arange(4), 20, np.random.default_rng(0))
    again = augmented.inputs(np.arange(4), 20, np.random.default_rng(0))
    other = augmented.inputs(np.arange(4), 20, np.random.default_rng(1))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert not np.array_equal(first, plain)
    assert np.array_equal(samples.inputs(np.arange(4), 20, np.random.default_rng(5)), plain)  # cache untouched


def test_stratified_holdout():
    labels = np.repeat(np.arange(10), 80)
    held = stratified_holdout(labels, 160)
    assert len(np.unique(held)) == 160
    assert np.bincount(labels[held], minlength=10).tolist() == [16] * 10
    assert np.array_equal(held, stratified_holdout(labels, 160))
    uneven = np.array([0] * 7 + [1] * 3)
    assert np.bincount(uneven[stratified_holdout(uneven, 5)]).tolist() == [4, 1]  # 3.5 and 1.5: larger remainder first
    for bad in (0, 800):
        with pytest.raises(InputError, match="--val"):
            stratified_holdout(labels, bad)


def test_split_validation_is_disjoint_and_unaugmented(nmnist_root):
    samples = dataclasses.replace(load_samples("nmnist", nmnist_root, "test"), event_augment=EventAugment())
    rest, validation = split_validation(samples, 10)
    assert len(rest) + len(validation) == len(samples)
    assert not set(rest.indices) & set(validation.indices)
    assert sorted(np.bincount(validation.labels).tolist()) == [1] * 10
    assert validation.event_augment is None and rest.event_augment is not None
    assert validation.split == "test-val"


def test_validation_split_of_the_real_training_recordings(shared_data):
    samples = load_samples("nmnist", shared_data / "nmnist", "train")
    rest, validation = split_validation(samples, 160)
    assert (len(rest), len(validation)) == (640, 160)
    # the 800 recordings hold 72 to 98 per digit: a fifth of each, rounded by largest remainders
    assert np.bincount(validation.labels).tolist() == [16, 20, 16, 15, 16, 14, 15, 17, 14, 17]
