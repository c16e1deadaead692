"""The offline command: one line per declared resource, clear errors, never a secret value."""

import subprocess
import sys

from carecircle.stackfiles import load_stack_config
from conftest import REPO_ROOT


def cli(*args):
    return subprocess.run([sys.executable, "infra/cli.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_offline_prints_each_resource_and_the_outputs():
    result = cli("offline", "prod")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    containers = [line for line in lines if line.startswith("docker:index/container:Container")]
    assert len(containers) == 9  # 3 api, 3 workers, gateway, nginx exporter, prometheus
    assert any(line.startswith("command:local:Command") and "secret inputs: stdin" in line for line in lines)
    assert "output gatewayUrl = https://api.carecircle.example" in lines
    _, config, secret_keys = load_stack_config("prod")
    assert secret_keys
    for key in secret_keys:
        assert config[key] not in result.stdout


def test_offline_unknown_stack_is_a_clear_error():
    result = cli("offline", "qa")
    assert result.returncode == 2
    assert "unknown stack 'qa'" in result.stderr and "dev, staging, prod" in result.stderr
    assert "Traceback" not in result.stderr


def test_offline_without_a_stack_shows_usage():
    result = cli("offline")
    assert result.returncode == 2 and "Missing argument" in result.stderr
