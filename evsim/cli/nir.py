"""``evsim import`` and ``evsim export``: models from and to NIR files (evsim.interop.nir)."""

from __future__ import annotations

from pathlib import Path

from evsim.cli.common import add_force_argument, add_output_arguments, check_output_file, positive_float, positive_int, print_json
from evsim.errors import InputError
from evsim.interop.nir import DEFAULT_NEURON_DT_S, SEMANTICS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import",
        help="a NIR file (snntorch, norse, sinabs, SpikingJelly, ...) as an evsim model file",
        description="Read a NIR graph as an evsim model: populations with the neuron rule of the chosen "
        "semantics, and the input encoding (event counts in bins of --dt-us over --timesteps steps). "
        "Prints each layer's neuron rule.",
    )
    p.add_argument("file", type=Path, metavar="FILE.nir", help="the NIR file to read")
    p.add_argument("--out", type=Path, required=True, help="the evsim model file to write (.npz)")
    add_force_argument(p)
    p.add_argument("--dt-us", type=positive_int, help="input bin width in µs (default: an evsim export's own)")
    p.add_argument("--timesteps", "-T", type=positive_int, help="number of steps (default: an evsim export's own)")
    p.add_argument("--semantics", choices=SEMANTICS, default="nir",
                   help="whose reading of the neurons to follow (README: Models from other simulators)")
    p.add_argument("--neuron-dt", type=positive_float, metavar="SECONDS",
                   help=f"--semantics nir's neuron time step (default {DEFAULT_NEURON_DT_S:g} s, "
                   "or the one an evsim export recorded)")
    add_output_arguments(p, progress=False)
    p.set_defaults(func=run_import)

    p = subparsers.add_parser(
        "export",
        help="an evsim model as a NIR file that snntorch and SpikingJelly import exactly",
        description="Write an evsim model (file or bundled name) as a NIR graph, with the bin width, the "
        "step count and the readout in its metadata.",
    )
    p.add_argument("model", metavar="MODEL", help="evsim model file (.npz) or bundled model name")
    p.add_argument("--out", type=Path, required=True, help="the NIR file to write (.nir)")
    add_force_argument(p, "NIR file")
    p.add_argument("--dt-us", type=positive_int,
                   help="the length of one time step in µs, written into the file (default: an event model's own; "
                        "a model of Poisson-coded images has none, so it needs this)")
    add_output_arguments(p, progress=False)
    p.set_defaults(func=run_export)


def run_import(args) -> int:
    from evsim.interop.nir import import_nir
    from evsim.model.file import save_model
    from evsim.model.summary import describe

    check_output_file(args.out, ".npz", args.force)
    model = import_nir(args.file, dt_us=args.dt_us, timesteps=args.timesteps, semantics=args.semantics,
                       neuron_dt_s=args.neuron_dt)
    save_model(args.out, model.graph, model.weights)
    layers = list(describe(model.graph))
    if args.json:
        print_json({"file": str(args.file), "semantics": args.semantics, "model": str(args.out), "layers": layers})
        return 0
    print(f"{args.file} ({args.semantics} semantics) -> {args.out}")
    for line in layers:
        print(f"  {line}")
    return 0


def with_step_width(model, dt_us: int | None, name: str):
    """``model`` with the time step ``dt_us`` in its encoding; a model without one needs it."""
    import dataclasses

    graph = model.graph
    window = (graph.encoding or {}).get("window_us")
    if dt_us is None:
        if not window:
            kind = (graph.encoding or {}).get("kind", "static")
            raise InputError(f"{name} codes its inputs as {kind} spikes, with no time step in µs, and a NIR file "
                             "records one: pass --dt-us N (the length of one step in µs, e.g. --dt-us 1000)")
        return model
    encoding = {**(graph.encoding or {}), "window_us": int(dt_us) * graph.timesteps}
    return dataclasses.replace(model, graph=dataclasses.replace(graph, encoding=encoding))


def run_export(args) -> int:
    from evsim.interop.nir import export_nir
    from evsim.model.file import load_model

    check_output_file(args.out, ".nir", args.force, "NIR file")
    model = with_step_width(load_model(args.model), args.dt_us, str(args.model))
    export_nir(model, args.out)
    if args.json:
        print_json({"model": str(args.model), "file": str(args.out)})
        return 0
    print(f"{args.model} -> {args.out} (NIR)")
    return 0
