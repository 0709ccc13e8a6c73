"""The paper's rule against surrogate-gradient BPTT: same network, data, budget (issue 32, item 1).

Both rules train evsim's LeNet through ``evsim train``'s own loop (``training.trainer.train``): the
same split, augmentation, penalty, optimiser, schedule, time steps, seeds and initial weights; only
``TrainConfig.rule`` differs ("paper": spike-based BP with eq. 22; "bptt": snntorch's fast sigmoid,
slope 25, through time, evsim.training.bptt). Each epoch of each run is one child process that
resumes the run's checkpoint, trains one epoch, and measures it:

- validation accuracy (the trainer's dense forward) and, on the exported model, the event engine's
  accuracy and synaptic operations per sample on the same validation frames (``evsim.Network``);
- the epoch's wall and CPU seconds (training alone, the trainer's figure) and the child's peak
  resident memory (``getrusage``: the data, the model and the largest mini-batch's tensors).

Runs are interleaved epoch by epoch (epoch 1 of every run, then epoch 2, ...; paper then BPTT for
each seed, the order flipped every other epoch), so that the load of a shared machine falls on
both rules alike. Rerunning the same command continues where it stopped (every epoch is
checkpointed, every measured epoch is appended to ``<out>/epochs.jsonl``).

    # N-MNIST: 640 real training recordings, the other 160 for validation, T = 100
    nice -n 10 python benchmarks/train_compare.py run nmnist --epochs 3 --seeds 0 1 --out runs/compare/nmnist
    # MNIST at T = 25 on a subset (2,000 trained on, 500 for validation)
    nice -n 10 python benchmarks/train_compare.py run mnist --epochs 4 --seeds 0 1 --limit 2500 --val 500 \\
        --test-limit 500 --out runs/compare/mnist
    # what one mini-batch costs each rule: time and the tensors autograd keeps for backward
    nice -n 10 python benchmarks/train_compare.py probe nmnist --rounds 3 --out runs/compare/probe_nmnist.json
    # the table and the figure
    python benchmarks/train_compare.py report runs/compare/nmnist runs/compare/mnist \\
        --figure benchmarks/figures/train_compare.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RULES = ("paper", "bptt")
# the probe also times the paper's rule as the torch loop, the implementation BPTT has here (the
# trainer runs it as Numba kernels on CPU: same results, fewer passes over memory)
PROBED = ("paper", "paper_torch_loop", "bptt")
# the recipes: the shipped models' settings, from random weights (benchmarks/RESULTS.md)
RECIPES = {
    "nmnist": dict(timesteps=100, optimizer="adam", lr=1e-3, dropout=0.2, augment=True, val=160, synops_penalty=1e-7),
    "mnist": dict(timesteps=25, optimizer="sgd", lr=0.01, momentum=0.9, dropout=0.0, augment=True, val=500,
                  synops_penalty=0.0),
}


def config_of(dataset: str, rule: str, seed: int, epochs: int, out: Path, args):
    from evsim.datasets.samples import default_root
    from evsim.training.regularizers import ActivityPenalty
    from evsim.training.trainer import TrainConfig

    recipe = dict(RECIPES[dataset])
    penalty = ActivityPenalty(synops=recipe.pop("synops_penalty"))
    for name in ("val", "timesteps"):
        if getattr(args, name, None) is not None:
            recipe[name] = getattr(args, name)
    run = out / f"{rule}_seed{seed}"
    return TrainConfig(arch="lenet", dataset=dataset, data=args.data or default_root(dataset), out=run / "model.npz",
                       epochs=epochs, batch_size=32, seed=seed, limit=args.limit, test_limit=args.test_limit,
                       device="cpu", checkpoint=run / "checkpoint.pt", resume=(run / "checkpoint.pt").is_file(),
                       penalty=penalty, rule=rule, **recipe)


# ------------------------------------------------------------------------------------ one epoch


def engine_on_validation(config) -> dict:
    """The exported model on the validation split, event engine (step mode), the trainer's frames."""
    import numpy as np

    import evsim
    from evsim.datasets.samples import load_training_samples, split_validation
    from evsim.model.file import load_model
    from evsim.training.trainer import TEST_SEED

    model = load_model(config.out)
    _, validation = split_validation(load_training_samples(config.dataset, config.data, config.limit), config.val)
    frames = validation.inputs(np.arange(len(validation)), config.timesteps,
                               np.random.default_rng([config.seed, TEST_SEED]))
    engine = evsim.Network(model.graph, model.weights)
    synops, correct = 0, 0
    for b in range(len(validation)):
        run = engine.run(frames[:, b])
        synops += run.synops
        correct += int(run.prediction == validation.labels[b])
    return {"engine_val_accuracy": correct / len(validation), "engine_val_synops": synops / len(validation)}


def one_epoch(spec: dict) -> dict:
    """Train epoch ``spec["epoch"]`` of one run (resuming its checkpoint) and measure it."""
    import torch

    from evsim.training.trainer import configure_torch, train

    configure_torch(spec["threads"])
    args = argparse.Namespace(**spec["args"])
    config = config_of(spec["dataset"], spec["rule"], spec["seed"], spec["epoch"], Path(spec["out"]), args)
    before = resource.getrusage(resource.RUSAGE_SELF)
    history = train(config, log=lambda line: print(f"[{spec['rule']} seed {spec['seed']}] {line}", file=sys.stderr,
                                                     flush=True), progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF)
    record = {key: value for key, value in history[-1].items() if not isinstance(value, dict)}
    record.update(dataset=spec["dataset"], rule=spec["rule"], seed=spec["seed"], torch_threads=torch.get_num_threads(),
                  # training and its evaluations (validation, test); the trainer's train_seconds is the wall time of training
                  process_cpu_seconds=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                  peak_rss_mib=after.ru_maxrss / 1024)
    record.update(engine_on_validation(config))
    return record


# ------------------------------------------------------------------------------------ the runs


def done_epochs(log: Path) -> set[tuple[str, int, int]]:
    if not log.is_file():
        return set()
    return {(r["rule"], r["seed"], r["epoch"]) for r in map(json.loads, log.read_text().splitlines()) if r}


def run(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "epochs.jsonl"
    passed = {k: v for k, v in vars(args).items() if k in ("data", "limit", "test_limit", "val", "timesteps")}
    passed["data"] = str(args.data) if args.data else None
    for epoch in range(1, args.epochs + 1):
        rules = RULES if epoch % 2 else RULES[::-1]
        for seed in args.seeds:
            for rule in rules:
                if (rule, seed, epoch) in done_epochs(log):
                    continue
                spec = dict(dataset=args.dataset, rule=rule, seed=seed, epoch=epoch, out=str(out), threads=args.threads,
                            args=passed)
                started = time.time()
                child = subprocess.run([sys.executable, __file__, "_epoch", json.dumps(spec)], capture_output=True,
                                       text=True, env={**os.environ, "NUMBA_THREADING_LAYER": "workqueue"})
                (out / "children.log").open("a").write(child.stderr)
                if child.returncode != 0:
                    sys.exit(f"{rule} seed {seed} epoch {epoch} failed:\n{child.stderr[-3000:]}")
                record = json.loads(child.stdout.strip().splitlines()[-1])
                record["child_wall_seconds"] = time.time() - started
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(f"{args.dataset} {rule} seed {seed} epoch {epoch}: val {100 * record.get('val_accuracy', 0):.2f}% "
                      f"engine {100 * record['engine_val_accuracy']:.2f}% synops {record['engine_val_synops'] / 1e6:.2f} M, "
                      f"train {record['train_seconds']:.0f} s, peak RSS {record['peak_rss_mib']:.0f} MiB", flush=True)


# ------------------------------------------------------------------------------------ one mini-batch


def probe_once(spec: dict) -> dict:
    """One training mini-batch of one rule, in a fresh process: seconds, and the bytes of the tensors
    autograd saves for backward (distinct storages: what the rule must hold between the passes)."""
    import numpy as np
    import torch

    from evsim.datasets.samples import load_training_samples
    from evsim.training.architectures import lenet
    from evsim.training.bptt import FastSigmoid
    from evsim.training.network import SpikingNetwork
    from evsim.training.neurons import torch_recurrence
    from evsim.training.regularizers import fan_outs, penalty_sum, synops_per_sample
    from evsim.training.trainer import configure_torch, loss_sum

    configure_torch(spec["threads"])
    args = argparse.Namespace(**spec["args"])
    config = config_of(spec["dataset"], "bptt" if spec["rule"] == "bptt" else "paper", 0, 1, Path("unused"), args)
    samples = load_training_samples(config.dataset, config.data, 64, config.augment, config.event_augment())
    torch.manual_seed(0)
    network = SpikingNetwork(lenet(samples.input_shape, config.timesteps), dropout=config.dropout,
                             bptt=FastSigmoid() if spec["rule"] == "bptt" else None)
    fans = fan_outs(network.graph, torch.float32)
    rng = np.random.default_rng(0)
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    timings = []
    for batch in (np.arange(32), np.arange(32, 64)):  # the first warms up (allocator, Numba)
        storages.clear()
        inputs = torch.from_numpy(samples.inputs(batch, config.timesteps, rng)).to(torch.float32)
        labels = torch.from_numpy(samples.labels[batch])
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
                torch_recurrence() if spec["rule"] == "paper_torch_loop" else contextlib.nullcontext():
            activity: dict = {}
            output = network(inputs, activity=activity)
            loss = loss_sum(output, labels) + penalty_sum(config.penalty, synops_per_sample(inputs, activity, fans), activity)
            forward_seconds = time.perf_counter() - wall
            loss.backward()
        timings.append((time.perf_counter() - wall, forward_seconds, time.process_time() - cpu))
    wall, forward, cpu = timings[-1]
    return {"dataset": spec["dataset"], "rule": spec["rule"], "timesteps": config.timesteps, "batch": 32,
            "batch_seconds": wall, "forward_seconds": forward, "batch_cpu_seconds": cpu,
            "saved_for_backward_mib": sum(storages.values()) / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def probe(args) -> None:
    passed = {"data": str(args.data) if args.data else None, "limit": None, "test_limit": None, "val": args.val,
              "timesteps": args.timesteps}
    results = []
    for round_ in range(args.rounds):
        for rule in PROBED if round_ % 2 == 0 else PROBED[::-1]:
            spec = dict(dataset=args.dataset, rule=rule, threads=args.threads, args=passed)
            child = subprocess.run([sys.executable, __file__, "_probe", json.dumps(spec)], capture_output=True, text=True,
                                   env={**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}, check=True)
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


# ------------------------------------------------------------------------------------ report


def load_runs(folders) -> list[dict]:
    return [json.loads(line) for folder in folders for line in (Path(folder) / "epochs.jsonl").read_text().splitlines()]


def markdown(records: list[dict]) -> str:
    lines = ["| dataset | rule | seed | epoch | val accuracy (dense) | val accuracy (engine) | synops / sample (engine) "
             "| train wall s | process CPU s | peak RSS MiB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(records, key=lambda r: (r["dataset"], r["rule"] != "paper", r["seed"], r["epoch"])):
        lines.append(f"| {r['dataset']} | {r['rule']} | {r['seed']} | {r['epoch']} | {100 * r['val_accuracy']:.2f} % "
                     f"| {100 * r['engine_val_accuracy']:.2f} % | {r['engine_val_synops'] / 1e6:.2f} M "
                     f"| {r['train_seconds']:.0f} | {r['process_cpu_seconds']:.0f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def figure(records: list[dict], path: Path) -> None:
    """Per dataset: validation accuracy against epoch and against training wall time, and the
    engine's synops per sample against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    datasets = sorted({r["dataset"] for r in records})
    fig, axes = plt.subplots(len(datasets), 3, figsize=(15, 3.8 * len(datasets)), squeeze=False)
    for row, dataset in zip(axes, datasets):
        runs = sorted({(r["rule"], r["seed"]) for r in records if r["dataset"] == dataset}, key=lambda k: (k[0] != "paper", k[1]))
        for rule, seed in runs:
            epochs = sorted((r for r in records if (r["dataset"], r["rule"], r["seed"]) == (dataset, rule, seed)),
                            key=lambda r: r["epoch"])
            style = dict(color="C0" if rule == "paper" else "C3", marker="o" if seed == runs[0][1] else "s",
                         linestyle="-" if seed == runs[0][1] else "--",
                         label=f"{'paper rule' if rule == 'paper' else 'BPTT, fast sigmoid'}, seed {seed}")
            number = [r["epoch"] for r in epochs]
            accuracy = [100 * r["val_accuracy"] for r in epochs]
            elapsed = [sum(e["train_seconds"] for e in epochs[: i + 1]) / 60 for i in range(len(epochs))]
            row[0].plot(number, accuracy, **style)
            row[1].plot(elapsed, accuracy, **style)
            row[2].plot(number, [r["engine_val_synops"] / 1e6 for r in epochs], **style)
        row[0].set_xlabel("epoch")
        row[1].set_xlabel("training wall time (min; shared 2-core machine, 1 torch thread each)")
        row[2].set_xlabel("epoch")
        row[0].set_ylabel(f"{dataset}: validation accuracy (%)")
        row[1].set_ylabel(f"{dataset}: validation accuracy (%)")
        row[2].set_ylabel(f"{dataset}: synops per sample (M, engine)")
        for ax in (row[0], row[2]):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in row:
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def probe_markdown(rows: list[dict]) -> str:
    """Medians over the rounds of each probed rule."""
    import statistics

    lines = ["| dataset | rule | T | batch | CPU s per batch (median) | wall s per batch (median) "
             "| saved for backward (MiB) | peak RSS MiB (median) | rounds |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted({(r["dataset"], r["rule"]) for r in rows}, key=lambda k: (k[0], PROBED.index(k[1]))):
        mine = [r for r in rows if (r["dataset"], r["rule"]) == key]
        median = {name: statistics.median(r[name] for r in mine)
                  for name in ("batch_cpu_seconds", "batch_seconds", "saved_for_backward_mib", "peak_rss_mib")}
        lines.append(f"| {key[0]} | {key[1]} | {mine[0]['timesteps']} | {mine[0]['batch']} "
                     f"| {median['batch_cpu_seconds']:.2f} | {median['batch_seconds']:.1f} "
                     f"| {median['saved_for_backward_mib']:.0f} | {median['peak_rss_mib']:.0f} | {len(mine)} |")
    return "\n".join(lines)


def report(args) -> None:
    records = load_runs(args.runs)
    print(markdown(records))
    if args.probe:
        print()
        print(probe_markdown([row for path in args.probe for row in json.loads(Path(path).read_text())]))
    if args.figure:
        figure(records, Path(args.figure))


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] in ("_epoch", "_probe"):  # a child process
        spec = json.loads(sys.argv[2])
        print(json.dumps(one_epoch(spec) if sys.argv[1] == "_epoch" else probe_once(spec)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "probe"):
        p = commands.add_parser(name)
        p.add_argument("dataset", choices=sorted(RECIPES))
        p.add_argument("--data", type=Path, help="dataset folder (default: $EVSIM_DATA/<dataset>)")
        p.add_argument("--threads", type=int, default=1, help="torch threads per child (default 1)")
        p.add_argument("--val", type=int, help="validation samples held out (default: 160 for nmnist, 500 for mnist)")
        p.add_argument("--timesteps", type=int, help="time steps (default: 100 for nmnist, 25 for mnist)")
        p.add_argument("--out", required=True)
        if name == "run":
            p.add_argument("--epochs", type=int, required=True)
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
            p.add_argument("--limit", type=int, help="training samples (before the validation split)")
            p.add_argument("--test-limit", type=int)
        else:
            p.add_argument("--rounds", type=int, default=3)
    p = commands.add_parser("report")
    p.add_argument("runs", nargs="+", help="the --out folders of runs")
    p.add_argument("--figure")
    p.add_argument("--probe", nargs="+", help="the JSON files of probe runs, for their table")
    args = parser.parse_args(argv)
    {"run": run, "probe": probe, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
