"""The tally of issue 17's hostile config (tests/hostile_config.py): how many rows the settings refuse,
accept and end in a traceback, and whether each ended as it should.

    .venv/bin/python bench/hostile_config.py [--program DIR] [--list]

--program DIR judges the rows with the settings package and stack files of another checkout (e.g. main
before this branch) while the rows stay this checkout's; --list prints every row that did not end as it
should."""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--program", type=Path, default=HERE, help="checkout whose settings judge the rows")
    parser.add_argument("--list", action="store_true", help="print each row that did not end as it should")
    args = parser.parse_args()
    program = args.program.resolve()
    sys.path[:0] = [str(program / "infra"), str(HERE / "tests")]
    from hostile_config import HOSTILE, outcome

    counts: collections.Counter = collections.Counter()
    wrong = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in HOSTILE:
            result, text = outcome(case, program, Path(scratch))
            counts[result] += 1
            expected = "accepted" if case.refused_on is None else "refused"
            on_key = case.refused_on is None or f"  - {case.refused_on}" in text
            if result != expected or not on_key:
                wrong.append((case, result, text))
    should_refuse = sum(1 for case in HOSTILE if case.refused_on is not None)
    print(f"program: {program}")
    print(f"rows: {len(HOSTILE)} ({should_refuse} to refuse, {len(HOSTILE) - should_refuse} to accept)")
    print(f"refused: {counts['refused']}  accepted: {counts['accepted']}  traceback: {counts['traceback']}")
    print(f"ended as they should (refused on their key, or accepted): {len(HOSTILE) - len(wrong)} of {len(HOSTILE)}")
    if args.list:
        for case, result, text in wrong:
            detail = text.strip().splitlines()[-1][:160] if text else ""
            print(f"  {result:9} {case.name} ({case.stack_file or case.stack}) {detail}")


if __name__ == "__main__":
    main()
