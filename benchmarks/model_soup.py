"""A "model soup" (Wortsman et al. 2022): the element-wise mean of the weights of models of one graph.

    python benchmarks/model_soup.py runs/soup.npz runs/mix/lenet-nmnist.npz runs/mix640/lenet-nmnist.npz
    python benchmarks/val_misses.py runs/soup.npz

Fine-tuned from one pretrained model, the mean of their weights can beat each of them at no cost
at inference; here it was tried on the `lenet-nmnist` runs that share the simulated pretraining
(benchmarks/RESULTS.md, "The engine's side of the speed targets"). The file is an ordinary model.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from evsim.model.file import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("out", help="the soup's model file (.npz)")
    parser.add_argument("models", nargs="+", help="model files of one graph")
    args = parser.parse_args()
    models = [load_model(path) for path in args.models]
    graph = models[0].graph
    if any(replace(m.graph, meta={}) != replace(graph, meta={}) for m in models[1:]):  # meta: training history
        parser.error("the models must share one graph (architecture, neurons, time steps, input encoding)")
    weights = {name: np.mean([m.weights[name].astype(np.float64) for m in models], axis=0).astype(w.dtype)
               for name, w in models[0].weights.items()}
    print(save_model(args.out, replace(graph, meta={**graph.meta, "soup_of": list(args.models)}), weights))


if __name__ == "__main__":
    main()
