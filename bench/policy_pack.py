"""How long the policy pack takes to judge a stack whose Swarm secret is a hostile value, by size: the
value repeats `a://x:` (each piece starts a URL's scheme and user, none ends in '@'), which the pack's
former credential pattern scanned to the end from every piece.

    .venv/bin/python bench/policy_pack.py

Prints, per size, the seconds the whole pack takes on prod with that secret, and the seconds the former
pattern alone takes on the value (it is quadratic, so only the smaller sizes are timed)."""

from __future__ import annotations

import base64
import copy
import re
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "infra")]

from carecircle.audit.policy_check import check  # noqa: E402
from carecircle.offline import evaluate_stack  # noqa: E402

FORMER = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]*)@", re.I)
SIZES_KIB = (16, 64, 256, 499)


def hostile(kib: int) -> str:
    return ("a://x:" * (kib * 1024 // 6 + 1))[: kib * 1024]


def main() -> None:
    prod = evaluate_stack("prod")
    print("size KiB | whole pack s | former pattern alone s")
    for kib in SIZES_KIB:
        resources = copy.deepcopy(prod.resources)
        secret = next(r for r in resources if r.type == "docker:index/secret:Secret")
        secret.inputs["data"] = base64.b64encode(hostile(kib).encode()).decode()
        started = time.perf_counter()
        check(resources)
        pack = time.perf_counter() - started
        former = "-"
        if kib <= 64:
            started = time.perf_counter()
            FORMER.findall(hostile(kib))
            former = f"{time.perf_counter() - started:.2f}"
        print(f"{kib:8} | {pack:12.2f} | {former}")


if __name__ == "__main__":
    main()
