"""``evsim import`` and ``evsim export``: models from and to NIR files (evsim.interop.nir)."""

from __future__ import annotations

from pathlib import Path

from evsim.cli.common import add_output_arguments, positive_int, print_json
from evsim.errors import InputError
from evsim.interop.nir import DEFAULT_NEURON_DT_S, SEMANTICS, export_nir, import_nir
from evsim.model.file import load_model, save_model
from evsim.model.summary import describe


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
    p.add_argument("--dt-us", type=positive_int, help="input bin width in µs (default: an evsim export's own)")
    p.add_argument("--timesteps", "-T", type=positive_int, help="number of steps (default: an evsim export's own)")
    p.add_argument("--semantics", choices=SEMANTICS, default="nir",
                   help="whose reading of the neurons to follow (README: Models from other simulators)")
    p.add_argument("--neuron-dt", type=float, metavar="SECONDS",
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
    add_output_arguments(p, progress=False)
    p.set_defaults(func=run_export)


def check_out(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"--out {path} is a folder; give the file to write")


def run_import(args) -> int:
    check_out(args.out)
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


def run_export(args) -> int:
    check_out(args.out)
    model = load_model(args.model)
    export_nir(model, args.out)
    if args.json:
        print_json({"model": str(args.model), "file": str(args.out)})
        return 0
    print(f"{args.model} -> {args.out} (NIR)")
    return 0
