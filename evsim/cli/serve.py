"""``evsim serve FILE --port PORT``: serve a recording as a live AEDAT 4.0 stream, as DV does.

For trying ``evsim stream tcp://HOST:PORT`` without a camera: dv-processing's own
``NetworkWriter`` serves the file's events at their recorded pace (or ``--speed`` times faster)
to the first client that connects, then the command ends.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from evsim.cli.common import add_output_arguments, non_negative_float, positive_float


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"must be in 1..65535, got {port}")
    return port


def run(args) -> int:
    from evsim.datasets.formats import read_events
    from evsim.datasets.live import serve_events

    events, sensor_size = read_events(args.file)
    address = f"tcp://{args.host}:{args.port}"

    def listening() -> None:
        if not args.json:
            pace = "full speed" if args.speed == 0 else f"{args.speed:g}x its recorded pace"
            print(f"serving {args.file} ({len(events):,} events, {sensor_size[0]} x {sensor_size[1]}) on {address} "
                  f"at {pace}; waiting for a client (evsim stream {address} --model MODEL)", flush=True)

    sent = serve_events(events, sensor_size, args.host, args.port, speed=args.speed,
                        on_listening=listening, wait_for_client_s=args.wait)
    if args.json:
        print(json.dumps({"file": str(args.file), "address": address, "sensor_size": list(sensor_size),
                          "speed": args.speed, "events_sent": sent}))
    else:
        print(f"sent {sent:,} events")
    sys.stdout.flush()
    os._exit(0)  # dv-processing's NetworkWriter does not return from its destructor once a client connected


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a recording as a live AEDAT 4.0 stream (for evsim stream tcp://...)",
        description="Serve an event file's events over TCP as a live AEDAT 4.0 stream through "
        "dv-processing's NetworkWriter, as iniVation's DV software serves a camera: to try "
        "evsim stream tcp://HOST:PORT without a camera. Needs evsim[live].",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="an event file evsim reads")
    parser.add_argument("--port", type=port_number, required=True, help="the TCP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument("--speed", type=non_negative_float, default=1.0, metavar="X",
                        help="X times the recorded pace (default 1: real time; 0: as fast as possible)")
    parser.add_argument("--wait", type=positive_float, default=60.0, metavar="S",
                        help="give up when no client connects within S s (default 60)")
    add_output_arguments(parser, progress=False)
    parser.set_defaults(func=run)
