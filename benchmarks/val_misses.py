"""Which held-out N-MNIST recordings models miss, and the MNIST digits they were recorded from.

    python benchmarks/val_misses.py lenet-nmnist runs/a.npz runs/b.npz --figure benchmarks/figures/nmnist_val_misses.png

For each model (a path or a bundled name): the recordings of the validation split (``evsim train
--val 160``, the same on every run) and of the 28 test recordings that its dense float32 forward
classifies wrongly (the engine's step mode gives the same answers: benchmarks/pareto.py), with
the label and the predicted class. The figure shows the recordings that every model misses: the
MNIST digit each was recorded from (N-MNIST's file number is the MNIST index, counted from 1)
above the recording's events. Data: ``$EVSIM_DATA/nmnist`` and ``$EVSIM_DATA/mnist``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from evsim.datasets import data_root
from evsim.datasets.samples import load_samples, split_validation
from evsim.model.file import model_path
from evsim.training.network import load_trained
from evsim.training.trainer import configure_torch

VALIDATION = 160


def misses(model, samples, timesteps: int) -> dict[int, int]:
    """Position in ``samples`` -> predicted class, for every sample the model gets wrong."""
    network = load_trained(model_path(model))
    wrong = {}
    for lo in range(0, len(samples), 32):
        batch = np.arange(lo, min(lo + 32, len(samples)))
        with torch.no_grad():
            predicted = network(torch.as_tensor(samples.inputs(batch, timesteps, np.random.default_rng(0))).float())
        predicted = predicted.argmax(1).numpy()
        for position, label, guess in zip(batch, samples.labels[batch], predicted):
            if guess != label:
                wrong[int(position)] = int(guess)
    return wrong


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--figure", type=Path, help="draw the recordings every model misses")
    parser.add_argument("--timesteps", type=int, default=100)
    args = parser.parse_args(argv)
    configure_torch(None)
    root = data_root()
    if root is None:
        parser.error("needs $EVSIM_DATA (real N-MNIST recordings and MNIST)")
    train = load_samples("nmnist", root / "nmnist", "train")
    _, validation = split_validation(train, VALIDATION)
    test = load_samples("nmnist", root / "nmnist", "test", encoding=train.encoding)
    shared = None
    for model in args.models:
        for name, samples in (("validation", validation), ("test", test)):
            wrong = misses(model, samples, args.timesteps)
            files = [samples.recordings.files[samples.indices[p]] for p in wrong]
            print(f"{model} {name}: {len(samples) - len(wrong)} of {len(samples)} right; missed: "
                  + ", ".join(f"{Path(f).parent.name}/{Path(f).name} (label {samples.labels[p]}, predicted {g})"
                              for f, (p, g) in zip(files, wrong.items())))
            if name == "validation":
                shared = set(files) if shared is None else shared & set(files)
    print(f"missed by every model: {', '.join(sorted(f'{Path(f).parent.name}/{Path(f).name}' for f in shared))}")
    if args.figure and shared:
        draw(sorted(shared), root / "mnist", args.figure)


def draw(files: list, mnist_root: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evsim.datasets.formats import read_events

    mnist = load_samples("mnist", mnist_root, "train")
    fig, axes = plt.subplots(2, len(files), figsize=(2 * len(files), 4.2), squeeze=False)
    for column, file in enumerate(files):
        number = int(Path(file).stem)
        axes[0, column].imshow(np.asarray(mnist.images[number - 1]).squeeze(), cmap="gray")
        axes[0, column].set_title(f"MNIST #{number}, label {mnist.labels[number - 1]}", fontsize=9)
        events, _ = read_events(file)
        counts = np.zeros((34, 34))
        np.add.at(counts, (events["y"], events["x"]), 1)
        axes[1, column].imshow(counts, cmap="gray")
        axes[1, column].set_title(f"{Path(file).parent.name}/{Path(file).name}: {len(events)} events", fontsize=9)
    for axis in axes.flat:
        axis.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
