"""What the deploy path imports, and how long that takes: `python -X importtime` of the modules the
Pulumi CLI loads for `pulumi up` (infra/__main__.py imports carecircle.program), in fresh interpreters.

    .venv/bin/python bench/import_time.py [--runs 7] [--module carecircle.program]

Prints the median cumulative import time of the program and of its heaviest dependencies, and the
carecircle modules it loads (auditor tooling must not be among them).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

INFRA = Path(__file__).resolve().parents[1] / "infra"
WATCHED = ("pulumi", "pulumi_docker", "pulumi_random", "pulumi_command", "pydantic", "jinja2", "yaml")


def one_run(module: str) -> dict[str, int]:
    """Cumulative microseconds per top-level import, from one fresh interpreter."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=INFRA,
                            capture_output=True, text=True, check=True)
    cumulative: dict[str, int] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        # import time: <self us> | <cumulative us> | <indented module name>
        _, cumulative_us, name = line.removeprefix("import time:").split("|")
        cumulative[name.strip()] = int(cumulative_us)
    return cumulative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--module", default="carecircle.program")
    args = parser.parse_args()
    runs = [one_run(args.module) for _ in range(args.runs)]
    print(f"{args.module}: median of {args.runs} fresh interpreters (python -X importtime), cumulative ms")
    for name in (args.module, *WATCHED):
        values = [run[name] for run in runs if name in run]
        if values:
            print(f"  {name:24} {statistics.median(values) / 1000:8.1f}")
    ours = sorted(name for name in runs[0] if name.split(".")[0] == "carecircle")
    print(f"carecircle modules loaded ({len(ours)}): {', '.join(ours)}")


if __name__ == "__main__":
    main()
