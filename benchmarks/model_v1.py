"""A version-1 copy of a model file, for A/B runs against checkouts older than the neuron variants.

    python benchmarks/model_v1.py evsim/models/lenet-nmnist.npz /tmp/lenet-nmnist-v1.npz

Model format version 2 (issue 16) added the firing-rule keys of evsim.model.neuron; a checkout
before it (such as issue 15's base, c18fbe9) refuses version 2. A model that uses the paper's rule
only means the same in version 1: this writes it without those keys. Refuses any other rule.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

PAPER_RULE = {"reset": "zero", "spikes_per_step": 1, "lower_bound": None, "fire_test": ">"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("model", help="a version-2 model file (.npz)")
    parser.add_argument("out", help="the version-1 copy to write (.npz)")
    args = parser.parse_args()
    with np.load(args.model, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays["__graph__"].tobytes().decode())
    if header.get("version") != 2:
        raise SystemExit(f"{args.model}: expected a version-2 model file, got version {header.get('version')!r}")
    for population in header["graph"]["populations"]:
        rule = {key: population.pop(key) for key in PAPER_RULE}
        if rule != PAPER_RULE:
            raise SystemExit(f"{args.model}: population {population['name']} fires under {rule}, which version 1 cannot say")
    header["version"] = 1
    arrays["__graph__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(args.out, **arrays)
    print(f"wrote {args.out} (version 1)")


if __name__ == "__main__":
    main()
