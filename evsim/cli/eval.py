"""``evsim eval``: the dense (torch) accuracy of a trained model file on a dataset split."""

from __future__ import annotations

from evsim.cli.common import (
    seed_argument,
    add_device_argument,
    add_data_arguments,
    add_model_argument,
    add_output_arguments,
    add_threads_argument,
    announce_simulation,
    model_dataset,
    positive_int,
    print_json,
    show_progress,
    require_torch,
    torch_device,
)
from evsim.datasets.samples import default_root, load_samples
from evsim.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="accuracy of a model, simulated densely with torch (needs torch)",
        description="Run a trained evsim model clock-driven (torch) over a dataset split (by default the "
        "model's own dataset) and print its accuracy. Needs torch (the 'train' extra).",
    )
    add_model_argument(p)
    add_data_arguments(p)
    p.add_argument("--timesteps", "-T", type=positive_int, help="time steps to simulate (default: the model's own)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="samples per dense batch (default 32)")
    seed_argument(p, "the Poisson input spikes")
    add_threads_argument(p, default=None, what="torch CPU threads")
    add_device_argument(p)
    add_output_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    require_torch("evsim eval")
    from evsim.training.network import load_trained
    from evsim.training.trainer import configure_torch, evaluate

    configure_torch(args.threads)
    device = torch_device(args.device, "evsim eval")
    from evsim.model.file import load_model
    from evsim.training.ann import evaluate_ann, is_ann, load_ann

    ann = is_ann(load_model(args.model).graph)
    network = load_ann(args.model, device) if ann else load_trained(args.model, device)
    graph = network.graph
    args.dataset = model_dataset(args, network)
    timesteps = args.timesteps if args.timesteps is not None else graph.timesteps
    encoding = graph.encoding or None
    if args.data is None:
        args.data = default_root(args.dataset)
    samples = load_samples(args.dataset, args.data, args.split, args.limit, encoding=encoding)
    if tuple(samples.input_shape) != tuple(graph.input_shape):
        raise InputError(f"{args.dataset} inputs are {list(samples.input_shape)}, the model takes {list(graph.input_shape)}")
    announce_simulation(args, samples)
    if ann:  # one analog pass per sample: the expected per-step input of the model's coding
        result = evaluate_ann(network, samples, timesteps, args.batch_size, args.seed, progress=show_progress(args))
    else:
        result = evaluate(network, samples, timesteps, args.batch_size, args.seed, progress=show_progress(args))
    report = {
        "model": str(args.model),
        "arch": graph.meta.get("arch"),
        "dataset": args.dataset,
        "data": str(args.data),
        "split": args.split,
        "mode": "ann" if ann else "dense",
        "device": device,
        "batch": args.batch_size,
        "samples": result.samples,
        "accuracy": result.accuracy,
        "loss": result.loss,
        "timesteps": timesteps,
        "seconds": result.seconds,
        "samples_per_s": result.samples_per_second,
    }
    if args.json:
        print_json(report)
    else:
        print(f"{args.model}: {args.dataset} {args.split}, {result.samples} samples, T={timesteps}: "
              f"accuracy {100 * result.accuracy:.2f}% (loss {result.loss:.4f}; {'ANN' if ann else 'dense PyTorch'} on {device}, "
              f"batch {args.batch_size}: {result.samples_per_second:.1f} samples/s)")
    return 0
