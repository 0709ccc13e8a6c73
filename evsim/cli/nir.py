"""``evsim import`` and ``evsim export``: models from and to NIR files (evsim.interop.nir)."""

from __future__ import annotations

from pathlib import Path

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
    p.add_argument("file", type=Path, metavar="FILE.nir")
    p.add_argument("--out", type=Path, required=True, help="the evsim model file to write (.npz)")
    p.add_argument("--dt-us", type=int, help="input bin width in µs (default: an evsim export's own)")
    p.add_argument("--timesteps", "-T", type=int, help="number of steps (default: an evsim export's own)")
    p.add_argument("--semantics", choices=SEMANTICS, default="nir",
                   help="whose reading of the neurons to follow (README: Models from other simulators)")
    p.add_argument("--neuron-dt", type=float, metavar="SECONDS",
                   help=f"--semantics nir's neuron time step (default {DEFAULT_NEURON_DT_S:g} s, "
                   "or the one an evsim export recorded)")
    p.set_defaults(func=run_import)

    p = subparsers.add_parser(
        "export",
        help="an evsim model as a NIR file that snntorch and SpikingJelly import exactly",
        description="Write an evsim model (file or bundled name) as a NIR graph, with the bin width, the "
        "step count and the readout in its metadata.",
    )
    p.add_argument("model", metavar="MODEL", help="evsim model file (.npz) or bundled model name")
    p.add_argument("--out", type=Path, required=True, help="the NIR file to write (.nir)")
    p.set_defaults(func=run_export)


def run_import(args) -> int:
    model = import_nir(args.file, dt_us=args.dt_us, timesteps=args.timesteps, semantics=args.semantics,
                       neuron_dt_s=args.neuron_dt)
    save_model(args.out, model.graph, model.weights)
    print(f"{args.file} ({args.semantics} semantics) -> {args.out}")
    for line in describe(model.graph):
        print(f"  {line}")
    return 0


def run_export(args) -> int:
    model = load_model(args.model)
    export_nir(model, args.out)
    print(f"{args.model} -> {args.out} (NIR)")
    return 0
