"""Time to evaluate each stack offline, process start to finish, and its peak memory.

Each measurement is a fresh interpreter that imports the program and evaluates one stack under
the mocks (what `python infra/cli.py offline <stack>` does), so import time is included.

    .venv/bin/python bench/evaluate.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys
sys.path.insert(0, "infra")
from carecircle.offline import evaluate_stack
stack, replicas = sys.argv[1], sys.argv[2]
# A /22 edge subnet has fixed addresses for up to 248 replicas per pool.
overrides = {"carecircle:apiBlueReplicas": int(replicas), "carecircle:edgeSubnet": "172.30.0.0/22"} if replicas != "-" else None
evaluation = evaluate_stack(stack, overrides=overrides)
print(len(evaluation.resources))
"""


def measure(stack: str, replicas: str) -> tuple[float, float, int]:
    """(seconds, peak RSS in MiB, resources declared) of one fresh evaluation."""
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run each in its own helper
    # process so the figure belongs to this evaluation alone.
    wrapper = (
        "import resource, subprocess, sys, time; t=time.perf_counter();"
        f"out=subprocess.run([sys.executable, '-c', {CHILD!r}, {stack!r}, {replicas!r}], capture_output=True, text=True, check=True).stdout;"
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, out.strip())"
    )
    out = subprocess.run([sys.executable, "-c", wrapper], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    seconds, rss_kib, count = out.split()
    return float(seconds), int(rss_kib) / 1024, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cases = [(s, "-") for s in ("dev", "staging", "prod")] + [("dev", str(n)) for n in (1, 10, 100)]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.runs} runs each (median, min)")
    print("| stack | api replicas | resources | seconds (median) | seconds (min) | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for stack, replicas in cases:
        runs = [measure(stack, replicas) for _ in range(args.runs)]
        seconds = [r[0] for r in runs]
        label = replicas if replicas != "-" else "stack file"
        print(f"| {stack} | {label} | {runs[0][2]} | {statistics.median(seconds):.3f} | {min(seconds):.3f} | {max(r[1] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
