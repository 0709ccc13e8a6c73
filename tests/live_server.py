"""A live AEDAT 4.0 stream of a real recording for the tests: dv-processing's own NetworkWriter.

``python tests/live_server.py FILE PORT SPEED [--send N] [--then close|stall]`` serves the first
``N`` events of FILE (all by default) on 127.0.0.1:PORT at SPEED times the recorded pace, once a
client connects, then closes the connection (the process ends) or stalls (keeps it open, silent).
It prints ``listening`` once the port is bound, so that a test connects only then.
"""

from __future__ import annotations

import argparse
import os
import sys

from evsim.datasets.formats import open_event_file, read_events
from evsim.datasets.live import LINGER_S, serve_events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("port", type=int)
    parser.add_argument("speed", type=float)
    parser.add_argument("--send", type=int)
    parser.add_argument("--then", choices=("close", "stall"), default="close")
    args = parser.parse_args()
    events, sensor_size = read_events(args.file)
    if args.send is not None:
        events = events[: args.send]
    sensor_size = sensor_size or open_event_file(args.file).sensor_size
    serve_events(events, sensor_size, "127.0.0.1", args.port, speed=args.speed,
                 on_listening=lambda: print("listening", flush=True),
                 linger_s=120 if args.then == "stall" else LINGER_S)
    sys.stdout.flush()
    os._exit(0)  # NetworkWriter's destructor would wait for the client to leave


if __name__ == "__main__":
    main()
