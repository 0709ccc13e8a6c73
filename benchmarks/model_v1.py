"""A version-1 copy of a model file, for A/B runs against checkouts older than the neuron variants.

    python benchmarks/model_v1.py evsim/models/lenet-nmnist.npz /tmp/lenet-nmnist-v1.npz

Model format version 2 (issue 16) added the firing-rule keys of evsim.model.neuron; a checkout
before it (such as issue 15's base, c18fbe9) refuses version 2. A model whose populations all fire
by the paper's rule means the same in version 1: this writes it without those keys. Refuses any
other rule.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from evsim.model.file import FORMAT_NAME, GRAPH_KEY, load_model

VARIANT_KEYS = ("reset", "spikes_per_step", "lower_bound", "fire_test")
"""What version 2 added to a population; version 1 reads their absence as the paper's rule."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("model", help="a model file (.npz) or the name of a bundled model")
    parser.add_argument("out", help="the version-1 copy to write (.npz)")
    args = parser.parse_args()
    model = load_model(args.model)  # every check of the loader: format, weights, shapes
    for population in model.graph.populations:
        if not population.neuron.is_default_rule:
            raise SystemExit(f"{args.model}: population {population.name} fires under {population.neuron}, "
                             "which version 1 cannot say")
    graph = model.graph.to_dict()
    for population in graph["populations"]:
        for key in VARIANT_KEYS:
            del population[key]
    header = {"format": FORMAT_NAME, "version": 1, "graph": graph}
    np.savez(args.out, **{GRAPH_KEY: np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}, **model.weights)
    print(f"wrote {args.out} (version 1)")


if __name__ == "__main__":
    main()
