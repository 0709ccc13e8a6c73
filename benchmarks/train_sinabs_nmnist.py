"""Train a small sinabs CNN on the real N-MNIST training recordings and export it with sinabs's
own NIR exporter: the peer model that benchmarks/RESULTS.md imports into evsim (issue 16).

The net: Conv(2->16, 5x5, stride 2, pad 2) . IAF . SumPool 2 . Conv(16->32, 3x3, pad 1) . IAF .
SumPool 2 . Flatten . Linear(512->10) . IAF, no biases (evsim refuses them: a bias is input to
every neuron at every step), sinabs's IAFSqueeze (multi-spike, subtractive reset, threshold 1,
membrane floor -1: what sinabs's own importer builds from an IF node). Input: event counts of each
recording in 20 bins of 15 ms from its first event (= evsim's bin_events(timesteps=20,
window_us=300_000)); output: the last population's spike counts, trained with cross-entropy and
sinabs's default surrogate gradient (BPTT over the 20 steps).

Run with the peers' virtualenv on one thread (about five minutes)::

    /work/peers-venv/bin/python benchmarks/train_sinabs_nmnist.py --data /work/shared/data/nmnist \
        --out tests/data/nir/sinabs_nmnist

It writes ``model.nir`` (sinabs.nir.to_nir), ``outputs.npz`` (sinabs's own output spikes and spike
counts per population on the three fixture recordings of tests/data/nir, as the other fixtures)
and ``meta.json`` (training and test accuracy of the sinabs model, versions).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
from pathlib import Path

import nir
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
T, BIN_US = 20, 15_000
FIXTURE_INPUTS = ROOT / "tests" / "data" / "nir" / "snntorch_lenet" / "inputs.npz"


def read_nmnist(path: Path) -> np.ndarray:
    """N-MNIST .bin: 5 bytes per event (x, y, p<<7 | t>>16, t>>8, t); y == 240 marks overflow."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y, p = raw[:, 0], raw[:, 1], raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    keep = y != 240
    return np.stack([x[keep], y[keep], p[keep], t[keep]], 1)


def frames(path: Path) -> np.ndarray:
    ev = read_nmnist(path)
    step = (ev[:, 3] - ev[0, 3]) // BIN_US
    keep = step < T
    out = np.zeros((T, 2, 34, 34), dtype=np.float32)
    np.add.at(out, (step[keep], ev[keep, 2], ev[keep, 1], ev[keep, 0]), 1)
    return out


def split(root: Path, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    files = sorted((root / name).glob("*/*.bin"))
    x = np.stack([frames(f) for f in files])
    y = np.array([int(f.parent.name) for f in files])
    return torch.from_numpy(x), torch.from_numpy(y)


def build():
    import sinabs.layers as sl

    N = torch.nn

    def iaf():
        return sl.IAFSqueeze(num_timesteps=T, spike_threshold=1.0, min_v_mem=-1.0)

    return N.Sequential(
        N.Conv2d(2, 16, 5, stride=2, padding=2, bias=False), iaf(), sl.SumPool2d(2),
        N.Conv2d(16, 32, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
        N.Flatten(), N.Linear(512, 10, bias=False), iaf())


def reset(net) -> None:
    import sinabs.layers as sl

    for m in net:
        if isinstance(m, sl.IAFSqueeze):
            m.reset_states()


def forward(net, x: torch.Tensor) -> torch.Tensor:
    """Output spike counts [B, 10] of a batch [B, T, 2, 34, 34]."""
    reset(net)
    out = net(x.reshape(-1, *x.shape[2:]))
    return out.reshape(x.shape[0], T, -1).sum(1)


def accuracy(net, x, y, batch: int = 50) -> float:
    with torch.no_grad():
        pred = torch.cat([forward(net, x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def record(net, x: torch.Tensor) -> dict:
    """sinabs's own run on the fixture inputs: output spikes per step, counts per population per step."""
    import sinabs.layers as sl

    neurons = [i for i, m in enumerate(net) if isinstance(m, sl.IAFSqueeze)]
    rec = {}
    hooks = [net[i].register_forward_hook(lambda m, inp, o, i=i: rec.__setitem__(i, o)) for i in neurons]
    reset(net)
    with torch.no_grad():
        net(x.reshape(-1, *x.shape[2:]))
    for h in hooks:
        h.remove()
    counts = np.stack([rec[i].reshape(len(x), T, -1).sum(2).numpy() for i in neurons])
    return {"out_spikes": rec[neurons[-1]].reshape(len(x), T, -1).numpy(), "layer_counts": counts,
            "layer_names": np.array([str(i) for i in neurons])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--data", type=Path, required=True, help="N-MNIST folder with Train/ and Test/")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    xtr, ytr = split(args.data, "Train")
    xte, yte = split(args.data, "Test")
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    start = time.time()
    for epoch in range(args.epochs):
        order = torch.randperm(len(xtr))
        total = 0.0
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            loss = torch.nn.functional.cross_entropy(forward(net, xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(xtr):.4f}, {time.time() - start:.0f} s", flush=True)
    train_acc, test_acc = accuracy(net, xtr, ytr), accuracy(net, xte, yte)
    print(f"sinabs accuracy: train {train_acc:.4f} ({len(xtr)}), test {test_acc:.4f} ({len(xte)})")

    import sinabs.nir as snir

    graph = snir.to_nir(net, torch.zeros(T, 2, 34, 34))
    graph.infer_types()  # sinabs leaves Conv2d.input_shape None, which nir.write cannot store
    for node in graph.nodes.values():  # torch tensors would be stored without nir.write's gzip
        for key, value in vars(node).items():
            if isinstance(value, torch.Tensor):
                setattr(node, key, value.detach().numpy())
    args.out.mkdir(parents=True, exist_ok=True)
    nir.write(args.out / "model.nir", graph)
    fixture = torch.from_numpy(np.load(FIXTURE_INPUTS)["x"])
    np.savez_compressed(args.out / "outputs.npz", **record(net, fixture))
    versions = {n: importlib.metadata.version(n) for n in ("torch", "nir", "sinabs", "numpy")}
    meta = {"peer": "sinabs", "net": str(net), "timesteps": T, "bin_us": BIN_US, "epochs": args.epochs,
            "batch": args.batch, "lr": args.lr, "seed": args.seed, "train_samples": len(xtr),
            "test_samples": len(xte), "train_accuracy": train_acc, "test_accuracy": test_acc,
            "train_seconds": round(time.time() - start), "versions": versions,
            "inputs": "tests/data/nir/snntorch_lenet/inputs.npz (the same three recordings in every fixture)"}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
