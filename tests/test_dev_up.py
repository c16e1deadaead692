"""bin/dev-up on a machine without the Pulumi CLI or Docker: one clear message naming what is
missing and how to install it, before anything is created."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PINNED = next(line.split("==")[1] for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if line.startswith("pulumi=="))


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """bin/dev-up and requirements.txt, and a tools/ directory that is the script's whole PATH."""
    (tmp_path / "bin").mkdir()
    shutil.copy(REPO_ROOT / "bin" / "dev-up", tmp_path / "bin" / "dev-up")
    shutil.copy(REPO_ROOT / "requirements.txt", tmp_path / "requirements.txt")
    (tmp_path / "tools").mkdir()
    for command in ("sed", "dirname", "mkdir"):
        (tmp_path / "tools" / command).symlink_to(shutil.which(command))
    tool(tmp_path, "python3", f'exec {shutil.which("python3")} "$@"')
    return tmp_path


def tool(checkout: Path, name: str, script: str) -> None:
    path = checkout / "tools" / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def dev_up(checkout: Path) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(checkout / "bin" / "dev-up")], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(checkout / "tools"), "HOME": str(checkout)})


def test_without_pulumi_and_docker_it_names_both_with_the_pinned_version(checkout):
    result = dev_up(checkout)
    assert result.returncode == 1
    assert "nothing was created" in result.stderr
    assert f"the Pulumi CLI {PINNED}" in result.stderr and f"--version {PINNED}" in result.stderr
    assert "Docker (the engine and its CLI)" in result.stderr
    assert not (checkout / ".venv").exists() and not (checkout / ".pulumi-state").exists()


def test_a_docker_engine_that_does_not_answer_is_named(checkout):
    tool(checkout, "pulumi", "exit 0")
    tool(checkout, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    result = dev_up(checkout)
    assert result.returncode == 1
    assert "a running Docker engine: 'docker info' fails" in result.stderr
    assert "Pulumi CLI" not in result.stderr
    assert not (checkout / ".venv").exists()


def test_with_everything_present_it_brings_dev_up(checkout):
    log = checkout / "calls.log"
    tool(checkout, "pulumi", f'echo "pulumi $*" >> {log}')
    tool(checkout, "docker", "exit 0")
    # A stand-in python3: `-m venv .venv` makes a venv whose pip only records what it is asked.
    tool(checkout, "python3", f'''case "$1" in
  -c) exit 0 ;;
  -m) mkdir -p .venv/bin; printf '#!/bin/sh\\necho "pip $*" >> {log}\\n' > .venv/bin/pip; chmod +x .venv/bin/pip
      printf '#!/bin/sh\\n' > .venv/bin/python; chmod +x .venv/bin/python ;;
esac''')
    (checkout / "tools" / "chmod").symlink_to(shutil.which("chmod"))
    result = dev_up(checkout)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls == ["pip install -q --disable-pip-version-check -r requirements.txt",
                     "pulumi stack select --create dev --secrets-provider passphrase", "pulumi up --stack dev --yes"]
