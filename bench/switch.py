"""Blue-green switch figures on a real nginx: requests lost, 5xx and stale keep-alive connections
for clients that retry once (as browsers do) and for clients that do not, and the time from the
switch command to all new requests reaching the new pool.

Uses the stack's own rendering and gateway-apply.sh (tests/switch_harness.py), stub pools on
127.0.0.1, bounded load.

    .venv/bin/python bench/switch.py [--switches 10] [--interval 1.0] [--clients 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra"), str(ROOT / "tests")]

from switch_harness import run_switches, switchable_gateway  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between switches")
    parser.add_argument("--clients", type=int, default=8, help="keep-alive clients of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, switchable_gateway(Path(tmp)) as gateway:
        assert gateway.switch("blue").returncode == 0
        timings = []
        for color in ("green", "blue"):  # the apply command alone, without load
            started = time.monotonic()
            assert gateway.switch(color).returncode == 0
            timings.append(time.monotonic() - started)
        run = run_switches(gateway, switches=args.switches, interval=args.interval, clients_per_kind=args.clients)
    apply_seconds = [finished - started for started, finished, _ in run.switches]
    settle = run.settle_times()
    print(f"{args.switches} switches blue<->green, {args.interval}s apart, {args.clients} retrying + {args.clients} non-retrying keep-alive clients")
    print("| clients | requests | failed | 5xx | stale keep-alive connections |")
    print("|---|---|---|---|---|")
    for label, retrying in (("retry an idempotent request once", True), ("never retry", False)):
        figures = run.of(retrying)
        print(f"| {label} | {figures['requests']} | {figures['failures']} | {figures['server_errors']} | {figures['stale_connections']} |")
    print(f"apply command (nginx -t, swap, reload, wait until serving): median {statistics.median(apply_seconds) * 1000:.0f} ms, "
          f"max {max(apply_seconds) * 1000:.0f} ms (idle: {statistics.median(timings) * 1000:.0f} ms)")
    print(f"switch command start -> last new request on the old pool: median {statistics.median(settle) * 1000:.0f} ms, "
          f"max {max(settle) * 1000:.0f} ms")
    print(f"requests started 0.5 s after a switch finished that reached the old pool: {run.late_requests_on_old_pool(0.5)}")


if __name__ == "__main__":
    main()
