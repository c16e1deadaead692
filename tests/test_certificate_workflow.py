"""The scheduled renewal workflow (.github/workflows/certificates.yml): it targets the certificate the
program really declares, renews only when due, and prod only through its approval environment."""

import pytest
from test_workflows import load, steps_using, validate

from acme_harness import acme_evaluation
from carecircle.components.certificate import ACME_CERTIFICATE_TYPE
from conftest import REPO_ROOT


def test_the_workflow_matches_the_github_workflow_schema():
    result = validate(REPO_ROOT / ".github" / "workflows" / "certificates.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("stack", "environment"), [("staging", "staging"), ("prod", "production")])
def test_each_stack_is_renewed_only_when_its_certificate_preview_shows_a_change(stack, environment):
    flow = load("certificates.yml")
    assert "schedule" in flow[True] and flow["concurrency"]["group"] == load("deploy.yml")["concurrency"]["group"]
    (urn,) = [r.urn for r in acme_evaluation(stack).of_type(ACME_CERTIFICATE_TYPE)]
    due, renew = flow["jobs"][f"due-{stack}"], flow["jobs"][f"renew-{stack}"]
    (preview,) = steps_using(due, "pulumi/actions@")
    assert preview["with"] == {"command": "preview", "stack-name": stack, "cloud-url": "${{ secrets.PULUMI_BACKEND_URL }}",
                               "target": urn, "expect-no-changes": True}
    assert preview["continue-on-error"] is True and "environment" not in due
    assert renew["needs"] == f"due-{stack}" and renew["if"] == f"needs.due-{stack}.outputs.due == 'true'"
    assert renew["environment"]["name"] == environment
    (up,) = steps_using(renew, "pulumi/actions@")
    assert up["with"]["command"] == "up" and up["with"]["target"] == urn and up["with"]["target-dependents"] is True
    assert up["with"]["policyPacks"] == "policy"
    for job in (due, renew):
        assert all("secrets." not in step.get("run", "") for step in job["steps"])
