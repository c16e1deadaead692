"""Shared fixtures: each stack evaluated once under the engine-like mocks."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The Pulumi CLI runs the program with infra/ first on sys.path; the tests import it the same way.
sys.path.insert(0, str(REPO_ROOT / "infra"))

from carecircle.offline import Evaluation, evaluate_stack  # noqa: E402


def pytest_report_header(config) -> str:
    """Which nginx the gateway tests run: the Debian revision bin/fetch-nginx unpacked (its root's stamp)."""
    from nginx_harness import NGINX

    stamp = Path(NGINX).resolve().parent / "root" / ".fetch-nginx"
    recorded = stamp.read_text().splitlines()[0] if stamp.exists() else f"no bin/fetch-nginx stamp beside {NGINX}"
    return f"nginx under test: {recorded}"


@pytest.fixture(scope="session")
def stacks() -> dict[str, Evaluation]:
    """The stacks as committed: dev on one Docker engine, staging and prod on Swarm."""
    return {name: evaluate_stack(name) for name in ("dev", "staging", "prod")}


@pytest.fixture(scope="session")
def engine_stacks(stacks) -> dict[str, Evaluation]:
    """dev, and staging's and prod's config rehearsed on the engine platform (dev stacks, see helpers.on_engine)."""
    from helpers import on_engine

    return {"dev": stacks["dev"], "staging": on_engine("staging"), "prod": on_engine("prod")}


@pytest.fixture(scope="session")
def engine():
    """A private dockerd forming a one-node swarm (tests/real_engine.py), stopped by pid at the end."""
    import os
    import shutil

    from real_engine import start_engine

    if os.geteuid() != 0 or not shutil.which("dockerd") or not os.path.exists("/bin/busybox"):
        pytest.fail("the engine tests need root, dockerd and busybox-static: run bin/swarm-prereqs as root", pytrace=False)
    yield from start_engine()


@pytest.fixture
def applier(engine):
    """An EngineApplier on the session's engine; what it created is torn down after the test."""
    from real_engine import applier_on

    with applier_on(engine) as applier:
        yield applier


@pytest.fixture
def uid() -> str:
    from real_engine import new_uid

    return new_uid()
