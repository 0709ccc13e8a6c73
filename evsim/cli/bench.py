"""``evsim bench``: event-driven vs dense simulation of one model on the same inputs, one run."""

from __future__ import annotations

from evsim.cli.common import add_data_arguments, load_split, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="throughput of evsim (step, async) vs dense PyTorch (batch 1, 64) on the same inputs")
    p.add_argument("--model", required=True, help="model file or bundled model name")
    add_data_arguments(p)
    p.set_defaults(limit=64)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the samples (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads for both simulators (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=main)


def main(args) -> int:
    from tqdm import tqdm

    import evsim
    from evsim.analysis.bench import benchmark

    network = evsim.load(args.model)
    samples = load_split(args, network)
    with tqdm(total=args.rounds, desc="evsim bench", unit="round", disable=None, leave=False) as bar:
        report = benchmark(network, samples, rounds=args.rounds, threads=args.threads, seed=args.seed, progress=bar.update)
    report["model"] = str(args.model)
    report["dataset"] = args.dataset
    if args.json:
        print_json(report)
        return 0
    print(f"model {report['model']}: {report['samples']} {args.dataset} samples x {report['rounds']} rounds, T={report['timesteps']}, {report['threads']} threads")
    rows = [
        ("evsim step mode", report["event_samples_per_s"]),
        ("evsim async mode", report["async_samples_per_s"]),
        ("dense PyTorch, batch 1", report["dense_batch1_samples_per_s"]),
        (f"dense PyTorch, batch {report['dense_batch64_actual_batch']}", report["dense_batch64_samples_per_s"]),
    ]
    for name, rate in rows:
        print(f"  {name:<26} {rate:10.1f} samples/s")
    print(f"speedup vs dense: {report['speedup_vs_dense_batch1']:.1f}x (batch 1), {report['speedup_vs_dense_batch64']:.1f}x (batch {report['dense_batch64_actual_batch']})")
    print(
        f"synops/s: {report['synops_per_s'] / 1e9:.2f} G ({report['threads']} threads); per core {report['synops_per_s_per_core'] / 1e9:.2f} G"
        f" = {100 * report['fraction_of_ceiling']:.0f} % of the bare scatter-add ceiling ({report['ceiling_synops_per_s'] / 1e9:.2f} G/s)"
    )
    print(f"compile (or cache load) {report['compile_or_cache_load_s']:.2f} s, kept apart from the run times")
    print("accuracy " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in report["accuracy"].items()))
    return 0
