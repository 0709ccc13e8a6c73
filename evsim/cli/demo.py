"""``evsim demo``: the main job on the real recordings bundled with evsim, with no arguments."""

from __future__ import annotations

from pathlib import Path

from evsim.cli.common import print_json


def register(subparsers) -> None:
    from evsim.analysis.demo import DEMO_DATA, DEMO_MODEL

    p = subparsers.add_parser(
        "demo",
        help="stream the bundled real N-MNIST recordings through the bundled model: accuracy, synops, spikes, "
             "energy estimate, speed against dense PyTorch, and a figure",
        description="Streams the real N-MNIST test recordings bundled with evsim through lenet-nmnist in "
                    "step mode (the trained time steps) and in async mode (continuous time), counts every "
                    "synaptic operation and spike, and measures evsim against dense PyTorch on the same "
                    "recordings. Needs no network and no data folder.",
    )
    p.add_argument("--model", default=DEMO_MODEL, help=f"model file or bundled model name (default {DEMO_MODEL})")
    p.add_argument("--data", type=Path, default=DEMO_DATA, help="N-MNIST folder (default: the bundled recordings)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--figure", type=Path, default=Path("evsim-demo.png"), help="PNG to write (default evsim-demo.png)")
    p.add_argument("--no-figure", action="store_true", help="write no PNG")
    p.add_argument("--no-dense", action="store_true", help="skip the speed comparison with dense PyTorch")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds of the speed comparison (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads of both simulators in the speed comparison")
    p.add_argument("--mode", choices=("step", "async"), default="step",
                   help="the mode whose figures lead (default step: the trained network's time steps, exactly "
                        "evsim run); the other mode's accuracy, synops and speed are shown beside them")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=main)


def main(args) -> int:
    import evsim
    from evsim.analysis.demo import format_demo, plot_demo, run_demo
    from evsim.errors import InputError

    if args.rounds < 1 or args.threads < 1:
        raise InputError("--rounds and --threads must be positive")
    result = run_demo(evsim.load(args.model), args.data, args.split, args.rounds, args.threads,
                      compare_dense=not args.no_dense, progress=not args.json, mode=args.mode)
    result["model"] = str(args.model)
    result["figure"] = None
    if not args.no_figure:
        try:
            result["figure"] = str(plot_demo(result, args.figure))
        except ImportError:
            result["figure_note"] = "no figure: matplotlib is not installed (pip install 'evsim[plot]')"
    if args.json:
        print_json(result)
    else:
        print(format_demo(result))
        print(f"figure              {result['figure']}" if result["figure"] else result.get("figure_note", ""))
    return 0
