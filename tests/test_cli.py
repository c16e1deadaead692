"""The offline command: one line per declared resource, clear errors, never a secret value."""

import shutil
import subprocess
import sys
import textwrap

from carecircle.stackfiles import load_stack_config
from conftest import REPO_ROOT


def cli(*args):
    return subprocess.run([sys.executable, "infra/cli.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_offline_prints_each_resource_and_the_outputs():
    result = cli("offline", "prod")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    containers = [line for line in lines if line.startswith("docker:index/container:Container")]
    # a gateway and an nginx exporter on each of 2 edge nodes, a Prometheus and an Alertmanager on each of 2 monitoring nodes, the blackbox exporter
    assert len(containers) == 9
    services = [line for line in lines if line.startswith("docker:index/service:Service")]
    assert len(services) == 2  # the blue pool and the workers
    assert len([line for line in lines if line.startswith("docker:index/secret:Secret") and "secret inputs: data" in line]) == 4
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


def test_docs_with_an_invalid_stack_prints_the_config_error_not_a_traceback(tmp_path):
    for name in ("infra", "docs"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for stack_file in REPO_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(stack_file, tmp_path / stack_file.name)
    with (tmp_path / "Pulumi.dev.yaml").open("a") as stack_file:
        stack_file.write("  carecircle:apiPort: 0\n")
    result = subprocess.run([sys.executable, "infra/cli.py", "docs"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Invalid configuration for stack 'dev'" in result.stderr and "carecircle:apiPort" in result.stderr
    assert "Traceback" not in result.stderr


def test_offline_evaluation_leaves_no_event_loop_open():
    """Offline commands printed "Exception ignored in: BaseEventLoop.__del__" now and then: an event
    loop of the mock monitor's threads, collected at exit after its sockets. None may stay open."""
    script = textwrap.dedent("""
        import asyncio, gc, sys
        sys.path.insert(0, "infra")
        from carecircle.offline import evaluate_stack
        evaluate_stack("staging")
        evaluate_stack("dev")
        gc.collect()
        loops = [o for o in gc.get_objects() if isinstance(o, asyncio.BaseEventLoop)]
        print(len(loops), sum(not loop.is_closed() for loop in loops))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    created, open_loops = map(int, result.stdout.split())
    assert created >= 2 and open_loops == 0
    assert "Exception ignored" not in result.stderr
