"""Fixtures of the swarm tests: a real 3-manager Docker Swarm in network namespaces, with the stand-in
images on every node.

    swarm            (session)  SwarmCluster: node1, node2 carecircle.edge=true; node2, node3
                                carecircle.monitoring=true; all managers. .images: tag -> image id.
    nginx_image      (session)  the tag of carecircle-standin/nginx:<version>, built on every node of
                                `swarm` from the root bin/fetch-nginx unpacks (run when missing).
    receivers_tls    (session)  a CA and a certificate for the host end of the swarm's bridge, where
                                the tests' alert receivers listen.
    monitoring_images (session) the Prometheus, Alertmanager (trusting receivers_tls's CA), nginx
                                exporter and blackbox exporter stand-ins on every node of `swarm`: role -> tag.
    swarm_resources  (function) Resources on `swarm`: services, networks, secrets, configs and probe
                                containers a test creates, removed when the test ends.
    make_swarm       (function) factory for extra clusters (destructive tests): make_swarm(managers=,
                                workers=, labels=, images=True) -> started SwarmCluster, stopped (and
                                checked for leftovers) when the test ends.
    registry         (session)  a private registry (Debian's docker-registry, htpasswd) on `swarm`'s network,
                                holding the api and workers stand-ins: .pinned[tag] is the digest-pinned
                                reference a service declares, .server the RegistryServer (credentials).

Missing prerequisites fail the tests with a message naming bin/swarm-prereqs; nothing is skipped.
Teardown runs from the fixture finalizer, from atexit, and on SIGTERM; a session whose pytest was killed
outright is cleaned up by the next one (cleanup_stale_sessions).
"""

from __future__ import annotations

import atexit
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from registry_server import RegistryServer

from .cluster import PREREQS_HINT, SwarmCluster, missing_prerequisites
from .images import API_VERSIONS, REPO, REPO_ROOT, WORKERS_VERSIONS, build_nginx_image, build_standin_images, nginx_root
from .probe import Resources

SWARM_LABELS = {
    "node1": {"carecircle.edge": "true", "carecircle.apps": "true"},
    "node2": {"carecircle.edge": "true", "carecircle.monitoring": "true", "carecircle.apps": "true"},
    "node3": {"carecircle.monitoring": "true", "carecircle.apps": "true"},
}


# (label, cluster) of every cluster the fixtures started, for the timings in the terminal summary
_CLUSTERS: list[tuple[str, SwarmCluster]] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for label, cluster in _CLUSTERS:
        figures = ", ".join(f"{k} {v:.1f} s" if isinstance(v, float) else f"{k} {v}" for k, v in cluster.timings.items())
        terminalreporter.write_line(f"swarm timings [{label}]: {figures}")


def _require_prerequisites() -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("swarm tests need: " + ", ".join(missing) + f"; {PREREQS_HINT}", pytrace=False)


def _assert_clean(cluster: SwarmCluster) -> None:
    left = {k: v for k, v in cluster.leftovers().items() if v}
    assert not left, f"swarm teardown left behind: {left}"


def _start(cluster: SwarmCluster, images: bool) -> SwarmCluster:
    atexit.register(cluster.stop)
    cluster.start()
    cluster.images = {}
    if images:
        t0 = time.monotonic()
        cluster.images = build_standin_images(cluster)
        cluster.timings["images"] = time.monotonic() - t0
    return cluster


class _SigtermToExit:
    """Turn SIGTERM into SystemExit while clusters run, so finalizers and atexit tear them down."""

    def __init__(self) -> None:
        self.previous = None

    def __enter__(self) -> None:
        def handler(signum, frame):
            raise SystemExit(128 + signum)
        self.previous = signal.signal(signal.SIGTERM, handler)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous or signal.SIG_DFL)


@pytest.fixture(scope="session")
def swarm() -> Iterator[SwarmCluster]:
    _require_prerequisites()
    cluster = SwarmCluster(managers=3, labels=SWARM_LABELS)
    _CLUSTERS.append(("session swarm", cluster))
    with _SigtermToExit():
        try:
            _start(cluster, images=True)
            yield cluster
        finally:
            cluster.stop()
    _assert_clean(cluster)


@pytest.fixture(scope="session")
def nginx_image(swarm: SwarmCluster) -> str:
    root = nginx_root()
    if not (root / "usr/sbin/nginx").exists():
        fetch = REPO_ROOT / "bin" / "fetch-nginx"
        if not fetch.exists():
            pytest.fail(f"no nginx root at {root} and no bin/fetch-nginx to make it", pytrace=False)
        proc = subprocess.run([str(fetch)], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not (root / "usr/sbin/nginx").exists():
            pytest.fail(f"bin/fetch-nginx failed ({proc.returncode}): {proc.stderr[-2000:]}", pytrace=False)
    t0 = time.monotonic()
    ids = build_nginx_image(swarm, root)
    swarm.timings["nginx_image"] = time.monotonic() - t0
    swarm.images.update(ids)
    return next(tag for tag in ids if not tag.endswith("-current"))


@dataclass
class Registry:
    server: RegistryServer
    pinned: dict[str, str]  # local tag -> <registry>/<name>:<tag>@sha256:...


def start_registry(cluster: SwarmCluster, tags: list[str]) -> Registry:
    """A registry on the cluster's network holding `tags` (pushed from node1, where the images were built)."""
    host = cluster.add_host("registry")
    server = RegistryServer(root=host.dir, address=host.address, netns=host.netns).start()
    try:
        t0 = time.monotonic()
        pinned = {tag: server.push(cluster["node1"].client, tag, tag) for tag in tags}
        cluster.timings["registry"] = time.monotonic() - t0
    except BaseException:
        server.stop()
        raise
    return Registry(server, pinned)


@pytest.fixture(scope="session")
def registry(swarm: SwarmCluster) -> Iterator[Registry]:
    tags = [f"{REPO}/api:{v}" for v in API_VERSIONS] + [f"{REPO}/workers:{v}" for v in WORKERS_VERSIONS]
    served = start_registry(swarm, tags)
    try:
        yield served
    finally:
        served.server.stop()


@pytest.fixture(scope="session")
def receivers_tls(swarm: SwarmCluster, tmp_path_factory):
    from alert_receivers import make_tls

    return make_tls(tmp_path_factory.mktemp("receivers-tls"), [swarm.gateway])


@pytest.fixture(scope="session")
def monitoring_images(swarm: SwarmCluster, receivers_tls) -> dict[str, str]:
    from .monitoring_images import ALERTMANAGER, BLACKBOX_EXPORTER, NGINX_EXPORTER, PROMETHEUS, build_monitoring_images

    t0 = time.monotonic()
    swarm.images.update(build_monitoring_images(swarm, receivers_tls.ca.read_bytes()))
    swarm.timings["monitoring_images"] = time.monotonic() - t0
    return {"prometheus": PROMETHEUS, "alertmanager": ALERTMANAGER, "nginx-exporter": NGINX_EXPORTER,
            "blackbox-exporter": BLACKBOX_EXPORTER}


@pytest.fixture
def swarm_resources(swarm: SwarmCluster, request: pytest.FixtureRequest) -> Iterator[Resources]:
    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    resources = Resources(swarm, prefix)
    try:
        yield resources
    finally:
        resources.cleanup()


@pytest.fixture
def make_swarm(request: pytest.FixtureRequest) -> Iterator[Callable[..., SwarmCluster]]:
    _require_prerequisites()
    clusters: list[SwarmCluster] = []

    def make(managers: int = 3, workers: int = 0, labels: dict[str, dict[str, str]] | None = None,
             images: bool = True, **kwargs) -> SwarmCluster:
        cluster = SwarmCluster(managers=managers, workers=workers, labels=labels, **kwargs)
        clusters.append(cluster)
        _CLUSTERS.append((f"{request.node.name} #{len(clusters)}", cluster))
        return _start(cluster, images)

    with _SigtermToExit():
        try:
            yield make
        finally:
            for cluster in clusters:
                cluster.stop()
    for cluster in clusters:
        _assert_clean(cluster)
