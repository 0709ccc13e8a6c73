"""Simulated against real N-MNIST, digit for digit.

Every real recording here shows a known MNIST digit (the file name is its MNIST index), so the
simulator (evsim.datasets.saccades) can be run on exactly those digits and compared with what the
ATIS camera recorded: event counts (per recording, and their correlation across digits), ON/OFF
balance, the event-rate profile over the three saccades (and how many recordings show the dips
near 100 and 200 ms that SOURCES.md describes), the path of the event centroid, how the event
frames (10 ms x polarity x pixel) correlate with the real ones, and how much a
simulated recording's event image resembles the real recording of its own digit compared with
real recordings of other digits.

    python benchmarks/simulator_validation.py [--data DIR] [--out benchmarks/results/simulator_validation.json]

writes the JSON and benchmarks/figures/simulator_validation.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from evsim.datasets import data_root
from evsim.datasets.mnist import load_mnist
from evsim.datasets.nmnist import NMNIST
from evsim.datasets.saccades import DvsParams, simulate_saccades

HERE = Path(__file__).resolve().parent
BIN_US = 10_000
BINS = 31
CENTROID_US = 5_000


def rate_profile(events: np.ndarray) -> np.ndarray:
    return np.bincount(np.minimum(events["t"] // BIN_US, BINS - 1), minlength=BINS)


def has_three_bursts(profile: np.ndarray) -> bool:
    """SOURCES.md's criterion: the rate dips near 100 ms and 200 ms below half the peaks around."""
    peaks = [profile[2:8].max(), profile[12:18].max(), profile[22:29].max()]
    dips = [profile[8:13].min(), profile[18:23].min()]
    return dips[0] < 0.5 * min(peaks[0], peaks[1]) and dips[1] < 0.5 * min(peaks[1], peaks[2])


def centroid_path(events: np.ndarray, image: np.ndarray, windows: int) -> np.ndarray:
    """Event centroid minus the digit's intensity centroid, per window ([windows, 2], NaN if < 5 events)."""
    yy, xx = np.mgrid[:28, :28]
    weight = image.astype(np.float64)
    centre = np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()
    window = np.minimum(events["t"] // CENTROID_US, windows - 1)
    count = np.bincount(window, minlength=windows).astype(np.float64)
    sums = np.stack([np.bincount(window, events["x"], windows), np.bincount(window, events["y"], windows)], 1)
    path = sums / np.maximum(count, 1)[:, None] - centre
    path[count < 5] = np.nan
    return path


def event_frames(events: np.ndarray) -> np.ndarray:
    """Centred event counts per 10 ms bin, polarity and pixel."""
    frames = np.zeros((BINS, 2, 34, 34))
    np.add.at(frames, (np.minimum(events["t"] // BIN_US, BINS - 1), events["p"].astype(int),
                       events["y"].astype(int), events["x"].astype(int)), 1.0)
    return frames - frames.mean()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def event_image(events: np.ndarray) -> np.ndarray:
    image = np.zeros(34 * 34)
    np.add.at(image, events["y"].astype(np.int64) * 34 + events["x"], 1.0)
    image -= image.mean()
    return image / (np.linalg.norm(image) + 1e-12)


def compare(data: Path, seed: int = 0) -> dict:
    images = {split: load_mnist(data / "mnist", split)[0] for split in ("train", "test")}
    real, sim, digits = [], [], []
    started = time.perf_counter()
    simulated_seconds = 0.0
    for split in ("train", "test"):
        recordings = NMNIST(data / "nmnist", split)
        indices = np.array([int(Path(f).stem) - 1 for f in recordings.files])
        tick = time.perf_counter()
        sim += simulate_saccades(images[split][indices], indices, DvsParams(), seed)
        simulated_seconds += time.perf_counter() - tick
        real += [recordings[i][0] for i in range(len(recordings))]
        digits += [images[split][i] for i in indices]
    counts = {k: np.array([len(e) for e in v]) for k, v in (("real", real), ("simulated", sim))}
    profiles = {k: np.array([rate_profile(e) for e in v]) for k, v in (("real", real), ("simulated", sim))}
    windows = 300_000 // CENTROID_US
    paths = {k: np.nanmedian(np.array([centroid_path(e, d, windows) for e, d in zip(v, digits)]), axis=0)
             for k, v in (("real", real), ("simulated", sim))}
    real_images = np.array([event_image(e) for e in real])
    sim_images = np.array([event_image(e) for e in sim])
    similarity = sim_images @ real_images.T  # cosine similarity of centred event-count images
    own = np.diag(similarity)
    others = (similarity.sum(1) - own) / (len(own) - 1)
    best_is_own = (similarity.argmax(1) == np.arange(len(own))).mean()
    mean_profile = {k: v.mean(0) for k, v in profiles.items()}
    frame_pairs = [(event_frames(r), event_frames(s)) for r, s in zip(real, sim)]
    frames = {
        "same_polarity": float(np.mean([correlation(r, s) for r, s in frame_pairs])),
        "swapped_polarity": float(np.mean([correlation(r, s[:, ::-1]) for r, s in frame_pairs])),
        "shifted_10ms_later": float(np.mean([correlation(r, np.roll(s, 1, axis=0)) for r, s in frame_pairs])),
        "shifted_10ms_earlier": float(np.mean([correlation(r, np.roll(s, -1, axis=0)) for r, s in frame_pairs])),
    }
    return {
        "recordings": len(real),
        "seed": seed,
        "simulation_ms_per_digit": 1000 * simulated_seconds / len(real),
        "events": {k: {"median": float(np.median(v)), "p5": float(np.percentile(v, 5)),
                       "p95": float(np.percentile(v, 95))} for k, v in counts.items()},
        "event_count_correlation": float(np.corrcoef(counts["real"], counts["simulated"])[0, 1]),
        "on_fraction": {k: float(np.mean([e["p"].mean() for e in v])) for k, v in (("real", real), ("simulated", sim))},
        "rate_profile_bin_us": BIN_US,
        "rate_profile": {k: v.tolist() for k, v in mean_profile.items()},
        "rate_profile_correlation": float(np.corrcoef(mean_profile["real"], mean_profile["simulated"])[0, 1]),
        "three_bursts": {k: float(np.mean([has_three_bursts(p) for p in v])) for k, v in profiles.items()},
        "centroid_path_window_us": CENTROID_US,
        "centroid_path": {k: np.round(v, 3).tolist() for k, v in paths.items()},
        "centroid_path_rms_px": float(np.sqrt(np.nanmean((paths["real"] - paths["simulated"]) ** 2))),
        "frame_correlation": frames,
        "image_similarity_own_digit": float(own.mean()),
        "image_similarity_other_digits": float(others.mean()),
        "real_recording_identified": float(best_is_own),
        "seconds": time.perf_counter() - started,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    t = (np.arange(BINS) + 0.5) * BIN_US / 1000
    for name, style in (("real", "-"), ("simulated", "--")):
        axes[0].plot(t, np.array(result["rate_profile"][name]) / (BIN_US / 1000), style, label=name)
        path_ = np.array(result["centroid_path"][name])
        times = (np.arange(len(path_)) + 0.5) * CENTROID_US / 1000
        axes[1].plot(times, path_[:, 0], style, label=f"x {name}")
        axes[1].plot(times, path_[:, 1], style, label=f"y {name}")
    axes[0].set(xlabel="time (ms)", ylabel="events per ms (mean)", title="event rate over the three saccades")
    axes[1].set(xlabel="time (ms)", ylabel="event centroid - digit centroid (px)", title="saccade path (median)")
    e = result["events"]
    axes[2].bar(["real", "simulated"], [e["real"]["median"], e["simulated"]["median"]],
                yerr=[[e[k]["median"] - e[k]["p5"] for k in ("real", "simulated")],
                      [e[k]["p95"] - e[k]["median"] for k in ("real", "simulated")]])
    axes[2].set(ylabel="events per recording (median, 5-95 %)",
                title=f"same {result['recordings']} digits; count corr {result['event_count_correlation']:.2f}")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--data", type=Path, default=data_root(), help="folder with mnist/ and nmnist/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "simulator_validation.json")
    parser.add_argument("--figure", type=Path, default=HERE / "figures" / "simulator_validation.png")
    args = parser.parse_args()
    if args.data is None:
        parser.error("no data folder: pass --data or set $EVSIM_DATA")
    result = compare(args.data, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.figure)
    e = result["events"]
    print(f"{result['recordings']} real recordings and the simulation of the same digits "
          f"({result['simulation_ms_per_digit']:.1f} ms per simulated digit)")
    print(f"events per recording, median [5 %, 95 %]: real {e['real']['median']:.0f} [{e['real']['p5']:.0f}, "
          f"{e['real']['p95']:.0f}], simulated {e['simulated']['median']:.0f} [{e['simulated']['p5']:.0f}, "
          f"{e['simulated']['p95']:.0f}]; correlation across digits {result['event_count_correlation']:.3f}")
    print(f"ON fraction: real {result['on_fraction']['real']:.3f}, simulated {result['on_fraction']['simulated']:.3f}")
    print(f"rate profile correlation {result['rate_profile_correlation']:.3f}; three bursts: real "
          f"{100 * result['three_bursts']['real']:.1f} %, simulated {100 * result['three_bursts']['simulated']:.1f} %")
    print(f"centroid path RMS difference {result['centroid_path_rms_px']:.2f} px")
    f = result["frame_correlation"]
    print(f"event frames (10 ms x polarity x pixel) vs the real recording of the same digit: correlation "
          f"{f['same_polarity']:.3f} (polarity swapped {f['swapped_polarity']:.3f}; 10 ms later "
          f"{f['shifted_10ms_later']:.3f}, earlier {f['shifted_10ms_earlier']:.3f})")
    print(f"event-image similarity to the real recording of the same digit {result['image_similarity_own_digit']:.3f} "
          f"vs other digits {result['image_similarity_other_digits']:.3f}; the own digit's real recording is the "
          f"most similar of all {result['recordings']} for {100 * result['real_recording_identified']:.1f} %")
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()
