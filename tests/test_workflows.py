"""The CI workflows for the users' repository: valid for GitHub, and doing what the team relies on."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
CHECK = str(Path(sys.executable).parent / "check-jsonschema")


def validate(*paths):
    return subprocess.run([CHECK, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def load(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_workflows_match_the_github_workflow_schema():
    result = validate(*sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    shutil.copy(WORKFLOWS / "deploy.yml", broken)
    broken.write_text(broken.read_text().replace("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04", 1))
    assert validate(broken).returncode != 0


def steps_using(job, action):
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action)]


def test_pull_requests_lint_test_diff_and_preview_every_stack():
    flow = load("pull-request.yml")
    jobs = flow["jobs"]
    assert "bin/test" in jobs["test"]["steps"][-1]["run"]  # the README's test command, lint included
    diff = jobs["declared-diff"]
    assert diff["steps"][0]["with"]["fetch-depth"] == 0
    assert any("diff --stack" in s.get("run", "") and "GITHUB_STEP_SUMMARY" in s.get("run", "") for s in diff["steps"])
    preview = jobs["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    (action,) = steps_using(preview, "pulumi/actions@")
    assert action["with"]["command"] == "preview" and action["with"]["comment-on-pr"] is True
    assert action["with"]["policyPacks"] == "policy"
    assert preview["env"]["PULUMI_BACKEND_URL"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert "skipped: set the repository secrets" in preview["steps"][0]["run"]
    assert action["if"] == "steps.backend.outputs.configured == 'true'"
    assert flow["permissions"]["pull-requests"] == "write"


def test_main_deploys_staging_then_prod_after_approval():
    jobs = load("deploy.yml")["jobs"]
    assert jobs["staging"]["needs"] == "test" and jobs["prod"]["needs"] == "staging"
    assert jobs["staging"]["environment"]["name"] == "staging"
    assert jobs["prod"]["environment"]["name"] == "production"
    for stack, job in (("staging", jobs["staging"]), ("prod", jobs["prod"])):
        (action,) = steps_using(job, "pulumi/actions@")
        assert action["with"]["command"] == "up" and action["with"]["stack-name"] == stack


@pytest.mark.parametrize("name", ["pull-request.yml", "deploy.yml"])
def test_no_secret_is_expanded_inside_a_script(name):
    for job in load(name)["jobs"].values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", ""), step.get("name")
