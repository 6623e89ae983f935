"""`python -m bench [--quick] [--only B1,B2,B3]`: Amends' benchmarks, in production shape.

Each benchmark sets up its own PostgreSQL database, Redis database number, Shopify stand-in,
SMTP server, gunicorn and RQ workers on 127.0.0.1, and removes them afterwards. Results are
printed as a table and written to bench/results/<time>.json (and latest.json). Not part of
`.ci/run`: figures come from here, never from timed assertions in the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = ("B1", "B2", "B3")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    with contextlib.suppress(OSError, IndexError):
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()

    def version(argv: list[str]) -> str:
        try:
            return (
                subprocess.run(argv, capture_output=True, text=True, timeout=10)
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "postgresql": version(["psql", "--version"]),
        "redis": version(["redis-server", "--version"]),
        "wrk": version(["wrk", "--version"]),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs and a smaller storm (a few minutes)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: B1,B2,B3")
    parser.add_argument("--workers", type=int, default=None, help="RQ workers for B2 and B3")
    parser.add_argument(
        "--web-processes",
        type=int,
        default=2,
        help="gunicorn processes for B1, both apps (default 2, the Procfile's WEB_CONCURRENCY default)",
    )
    parser.add_argument("--incidents", type=int, default=None, help="B3 storm size (default 5000, quick 300)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the web workers (B1) and RQ workers (B2); pip install py-spy",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.web_processes < 1:
        parser.error(f"--web-processes must be 1 or more, not {args.web_processes}")
    chosen = [b.strip().upper() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")

    # A TERM (from `timeout`, say) unwinds like Ctrl-C: every stack stops its processes and
    # drops its database on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.out / f"run-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": stamp, "quick": args.quick, "machine": machine(), "benchmarks": {}}
    print(f"Amends benchmarks ({'quick' if args.quick else 'full'}): {', '.join(chosen)}; logs in {run_dir}")

    for name in chosen:
        started = time.monotonic()
        print(f"\n{name} …", flush=True)
        try:
            if name == "B1":
                from bench import intake

                outcome = intake.run(
                    run_dir, args.quick, profile=args.profile, web_processes=args.web_processes
                )
            elif name == "B2":
                from bench import apology

                outcome = apology.run(run_dir, args.quick, workers=args.workers, profile=args.profile)
            else:
                from bench import storm

                outcome = storm.run(run_dir, args.quick, workers=args.workers, incidents=args.incidents)
        except Exception as error:  # one benchmark failing still reports the others
            outcome = {"error": f"{type(error).__name__}: {error}"}
            print(f"  {name} failed: {outcome['error']}", file=sys.stderr)
        outcome["seconds"] = round(time.monotonic() - started, 1)
        results["benchmarks"][name] = outcome

    results["machine"]["load_average_at_end"] = os.getloadavg()
    print()
    print(report.table(results))
    path = args.out / f"{stamp}.json"
    text = json.dumps(results, indent=2, default=str)
    path.write_text(text)
    (args.out / "latest.json").write_text(text)
    print(f"\nwritten to {path}")
    return 0 if all("error" not in b for b in results["benchmarks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
