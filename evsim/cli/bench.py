"""``evsim bench``: event-driven vs dense simulation of one model on the same inputs, one run."""

from __future__ import annotations

from evsim.cli.common import (
    seed_argument,
    add_data_arguments,
    add_model_argument,
    add_output_arguments,
    add_threads_argument,
    load_split,
    positive_int,
    print_json,
    progress_disabled,
    require_torch,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="throughput of evsim (step, async) vs dense PyTorch (batch 1, 64) on the same inputs (needs torch)",
        description="Time evsim's step and asynchronous modes against the dense PyTorch simulation of the same "
                    "network (batch 1 and batch 64) on the same samples, in one process, interleaved round by "
                    "round; every rate is printed with its spread across rounds. Needs torch (the 'train' extra).",
    )
    add_model_argument(p)
    add_data_arguments(p, limit_default=64)
    p.add_argument("--rounds", type=positive_int, default=3, help="interleaved timing rounds over the samples (default 3)")
    add_threads_argument(p, what="threads of both simulators")
    seed_argument(p, "the Poisson input coding of static images")
    add_output_arguments(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from tqdm import tqdm

    import evsim
    from evsim.analysis.bench import benchmark

    require_torch("evsim bench (the dense PyTorch side)")
    network = evsim.load(args.model)
    samples = load_split(args, network)
    with tqdm(total=args.rounds, desc="evsim bench", unit="round", disable=progress_disabled(args), leave=False) as bar:
        report = benchmark(network, samples, rounds=args.rounds, threads=args.threads, seed=args.seed, progress=bar.update)
    report["model"] = str(args.model)
    report["dataset"] = args.dataset
    report["data"] = str(args.data)
    if args.json:
        print_json(report)
        return 0
    print(format_bench(report))
    return 0


def format_bench(r: dict) -> str:
    threads = f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}"
    big = r["dense_batch64_actual_batch"]
    lines = [f"model {r['model']}: {r['samples']} {r['dataset']} samples x {r['rounds']} rounds, T={r['timesteps']}; "
             f"samples/s (mean over rounds; slowest .. fastest round)"]
    rows = [
        (f"evsim step mode, binned, batch 1, {threads}", "event_samples_per_s"),
        (f"evsim step mode, raw events, batch 1, {threads}", "event_from_raw_samples_per_s"),
        ("evsim step mode, batch 1, 1 thread", "event_1thread_samples_per_s"),
        (f"evsim async mode, batch 1, {threads}", "async_samples_per_s"),
        (f"dense PyTorch, batch 1, {threads}", "dense_batch1_samples_per_s"),
        (f"dense PyTorch, batch {big}, {threads}", "dense_batch64_samples_per_s"),
        (f"dense floor (convs, linears), batch {r['dense_floor_batch']}, {threads}", "dense_floor_samples_per_s"),
    ]
    for name, key in rows:
        spread = r["spread_samples_per_s"][key]
        lines.append(f"  {name:<48} {r[key]:10.1f}   ({spread['min']:.1f} .. {spread['max']:.1f})")
    lines.append(f"speedup of evsim step mode (batch 1) vs dense PyTorch: {r['speedup_vs_dense_batch1']:.2f}x at batch 1, "
                 f"{r['speedup_vs_dense_batch64']:.2f}x at batch {big} ({threads} each); both from binned inputs "
                 f"(from raw events: {r['speedup_vs_best_dense_from_raw']:.2f}x the best dense figure); "
                 f"{r['speedup_vs_dense_floor']:.2f}x the dense floor")
    lines.append(
        f"synops/s (step mode): {r['synops_per_s'] / 1e9:.2f} G ({threads}); per core {r['synops_per_s_per_core'] / 1e9:.2f} G"
        f" = {100 * r['fraction_of_ceiling']:.0f} % of the bare scatter-add ceiling ({r['ceiling_synops_per_s'] / 1e9:.2f} G/s)"
    )
    lines.append(f"compile (or cache load) {r['compile_or_cache_load_s']:.2f} s, kept apart from the run times")
    names = {"step": "evsim step mode", "step_raw": "evsim step mode from raw events", "async": "evsim async mode",
             "dense_batch1": "dense PyTorch batch 1", "dense_batch64": f"dense PyTorch batch {big}"}
    lines.append("accuracy " + ", ".join(f"{names.get(k, k)} {100 * v:.1f} %" for k, v in r["accuracy"].items()))
    return "\n".join(lines)
