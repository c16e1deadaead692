"""The committed config reference and JSON Schema match the settings model and stack files."""

from carecircle.audit import reference
from conftest import REPO_ROOT


def test_config_reference_is_up_to_date():
    for path, content in reference.documents(REPO_ROOT).items():
        assert path.read_text() == content, f"{path.name} is stale: run python infra/cli.py docs"


def test_reference_documents_every_key_and_marks_secrets():
    text = (REPO_ROOT / "docs" / "config-reference.md").read_text()
    for key in ("carecircle:apiBlueReplicas", "docker:host", "carecircle:gatewayRoutes"):
        assert f"`{key}`" in text
    database_url = next(line for line in text.splitlines() if line.startswith("| `carecircle:databaseUrl`"))
    assert "| yes |" in database_url and "(secret)" in database_url
