"""``evsim demo``: the main job on the real recordings bundled with evsim, with no arguments."""

from __future__ import annotations

from pathlib import Path

from evsim.cli.common import (
    add_model_argument,
    add_output_arguments,
    add_threads_argument,
    positive_int,
    print_json,
    show_progress,
)

DEMO_FIGURE = Path("runs") / "evsim-demo.png"  # runs/ is git-ignored: the demo leaves a checkout clean


def register(subparsers) -> None:
    from evsim.paths import DEMO_DATA, DEMO_MODEL

    p = subparsers.add_parser(
        "demo",
        help="stream the bundled real N-MNIST recordings through the bundled model: accuracy, synops, spikes, "
             "energy estimate, speed against dense PyTorch, and a figure",
        description="Streams the real N-MNIST test recordings bundled with evsim through lenet-nmnist in "
                    "step mode (the trained time steps) and in async mode (continuous time), counts every "
                    "synaptic operation and spike, and measures evsim against dense PyTorch on the same "
                    "recordings. Needs no network and no data folder.",
    )
    add_model_argument(p, required=False, default=DEMO_MODEL)
    p.add_argument("--data", type=Path, default=DEMO_DATA, help="N-MNIST folder (default: the bundled recordings)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="dataset split (default test)")
    p.add_argument("--figure", type=Path, default=DEMO_FIGURE, help=f"PNG file to write (.png), or a folder to write {DEMO_FIGURE.name} into (default {DEMO_FIGURE})")
    p.add_argument("--no-figure", action="store_true", help="write no PNG")
    p.add_argument("--no-dense", action="store_true", help="skip the speed comparison with dense PyTorch")
    p.add_argument("--rounds", type=positive_int, default=3, help="timing rounds of the speed comparison (default 3)")
    add_threads_argument(p, what="threads of both simulators in the speed comparison")
    p.add_argument("--mode", choices=("step", "async"), default="step",
                   help="the mode whose figures lead (default step: the trained network's time steps, exactly "
                        "evsim run); the other mode's accuracy, synops and speed are shown beside them")
    add_output_arguments(p)
    p.set_defaults(func=main)


def figure_path(figure: Path) -> Path:
    """``--figure``: a PNG, or a folder (anything not named .png) to write the demo's PNG into."""
    if figure.is_dir() or figure.suffix.lower() != ".png":
        return figure / DEMO_FIGURE.name
    return figure


def main(args) -> int:
    import evsim
    from evsim.analysis.demo import format_demo, plot_demo, run_demo
    from evsim.errors import InputError

    if args.rounds < 1 or args.threads < 1:
        raise InputError("--rounds and --threads must be positive")
    result = run_demo(evsim.load(args.model), args.data, args.split, args.rounds, args.threads,
                      compare_dense=not args.no_dense, progress=show_progress(args), mode=args.mode)
    result["model"] = str(args.model)
    result["figure"] = None
    if not args.no_figure:
        try:
            result["figure"] = str(plot_demo(result, figure_path(args.figure)))
        except ImportError:
            result["figure_note"] = "no figure: matplotlib is not installed (pip install 'evsim[plot]')"
    if args.json:
        print_json(result)
    else:
        print(format_demo(result))
        print(f"figure              {result['figure']}" if result["figure"] else result.get("figure_note", ""))
    return 0
