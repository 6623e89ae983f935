"""`python -m plugin.standin`: the stand-in as its own process (benchmarks run it so)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from plugin.standin.cost import PLANS
from plugin.standin.server import FAULT_KINDS, StandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m plugin.standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every Admin API call")
    parser.add_argument("--plan", choices=sorted(PLANS), default="standard")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=FRACTION",
        help=f"inject a fraction of failures; KIND is one of {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--port-file", help="write the port here once listening")
    args = parser.parse_args(argv)

    faults = {}
    for item in args.fault:
        kind, _, fraction = item.partition("=")
        faults[kind] = float(fraction or 0)
    standin = StandIn(args.host, args.port, latency=args.latency_ms / 1000, plan=args.plan, seed=args.seed)
    standin.configure(faults=faults)
    standin.start()
    if args.port_file:
        with open(args.port_file, "w") as handle:
            handle.write(str(standin.port))
    print(f"Shopify stand-in on {standin.url} (SHOPIFY_ADMIN_BASE_URL={standin.admin_base})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    standin.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
