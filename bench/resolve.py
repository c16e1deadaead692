"""How fast the gateway follows a re-resolved upstream name (the Swarm design's `tasks.<service>`), on
the nginx of production's line, against a DNS server of this script's own on 127.0.0.1 answering
with Docker's TTL (600 s): seconds from a DNS change to every request reaching the new set of
addresses, for tasks added, tasks removed, no task at all (NOERROR without data, and NXDOMAIN), and
the name back; plus the interval between nginx's queries and what it logs meanwhile.

    .venv/bin/python bench/resolve.py [--valid 5s] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra"), str(ROOT / "tests")]

from carecircle.rendering import Upstream  # noqa: E402
from dns_stub import dns_stub  # noqa: E402
from nginx_harness import free_port, running_gateway, settings_for, stub_upstreams  # noqa: E402

NAME = "tasks.carecircle-prod-api-blue"
ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def served(gateway, count: int = 6) -> set:
    seen = set()
    for _ in range(count):
        status, _, body = gateway.request("GET", "/api/ping")
        seen.add(json.loads(body)["address"] if status == 200 else status)
    return seen


def until(gateway, expected: set, limit: float = 30) -> float:
    started = time.monotonic()
    while served(gateway) != expected:
        if time.monotonic() - started > limit:
            return float("inf")
        time.sleep(0.05)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--valid", default="5s", help="gatewayResolverValid")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = settings_for("dev", {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"], "carecircle:gatewayResolverValid": args.valid})
    port = free_port()
    steps = [("one task", ADDRESSES[:1], {ADDRESSES[0]}), ("scaled to three", ADDRESSES, set(ADDRESSES)),
             ("two removed", ADDRESSES[1:2], {ADDRESSES[1]}), ("no task (NOERROR, no data)", [], {502}),
             ("name unknown (NXDOMAIN)", None, {502}), ("back", ADDRESSES[2:], {ADDRESSES[2]})]
    figures: dict[str, list[float]] = {name: [] for name, _, _ in steps}
    with tempfile.TemporaryDirectory() as tmp, dns_stub() as dns, stub_upstreams(3, addresses=ADDRESSES, port=port):
        dns.records[NAME] = ADDRESSES[:1]
        with running_gateway(Path(tmp), settings, {"api": Upstream((f"{NAME}:{port}",), resolve=True)}, resolver=dns.address) as gateway:
            until(gateway, {ADDRESSES[0]})
            for _ in range(args.rounds):
                for name, records, expected in steps:
                    if records is None:
                        dns.records.pop(NAME, None)
                    else:
                        dns.records[NAME] = records
                    figures[name].append(until(gateway, expected))
            queries = dns.a_queries(NAME)
            error_log = gateway.error_log().splitlines()
    intervals = [b - a for a, b in zip(queries, queries[1:], strict=False)]
    print(f"gatewayResolverValid {args.valid}, DNS TTL 600 s, {args.rounds} rounds")
    print("| DNS change | seconds until every request follows it (each round) | max |")
    print("|---|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {max(values):.2f} |")
    print(f"A queries: {len(queries)}, interval median {statistics.median(intervals):.2f} s, max {max(intervals):.2f} s")
    resolve_errors = [line for line in error_log if "could not be resolved" in line]
    no_live = [line for line in error_log if "no live upstreams" in line]
    print(f"error log: {len(resolve_errors)} 'could not be resolved' lines, {len(no_live)} 'no live upstreams' lines")
    if resolve_errors:
        print("  e.g.", resolve_errors[0].split("] ", 1)[-1][:160])


if __name__ == "__main__":
    main()
