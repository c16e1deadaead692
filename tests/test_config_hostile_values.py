"""Issue 17's hostile values (tests/hostile_config.py): each one the settings must refuse is refused in one
clear message on its key, naming the stack and a fix, without a traceback and without echoing a secret;
each one that is right is accepted. bench/hostile_config.py prints the same rows as a tally."""

from __future__ import annotations

import pytest
from hostile_config import HOSTILE, SECRET, outcome

from carecircle.offline import REPO_ROOT

FIX_COMMANDS = ("pulumi config", "set ", "pulumi stack rename")


def test_the_table_covers_every_family_of_the_issue():
    assert len(HOSTILE) >= 83 and len({case.name for case in HOSTILE}) == len(HOSTILE)
    assert {case.family for case in HOSTILE} == {"nginx grammar", "prometheus", "derived names", "swarm", "across keys", "environment",
                                                 "host paths and PEM", "provider keys", "bounds", "stack names", "no over-refusal"}


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_a_hostile_value_is_refused_on_its_key_or_a_right_one_accepted(case, tmp_path):
    result, text = outcome(case, REPO_ROOT, tmp_path)
    assert result != "traceback", text
    if case.refused_on is None:
        assert result == "accepted", text
        return
    assert result == "refused", f"accepted: {case.what}"
    assert "Traceback" not in text and SECRET not in text
    stack = case.stack_file or case.stack
    assert f"stack '{stack}'" in text
    lines = text.splitlines()
    on_key = [index for index, line in enumerate(lines) if line.startswith(f"  - {case.refused_on}")]
    assert on_key, f"no problem on {case.refused_on}:\n{text}"
    fix = lines[on_key[0] + 1].strip().removeprefix("fix: ")
    assert fix.startswith(FIX_COMMANDS) and (f"--stack {stack}" in fix or f"Pulumi.{stack}.yaml" in fix or "stack rename" in fix), text

