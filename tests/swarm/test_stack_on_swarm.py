"""The swarm stack proven on a real 3-manager Docker Swarm (tests/swarm/cluster.py): deployed from
nothing, released blue to green and back, rolled (a secret rotation, a memory change), a failing
rollout rolled back, workers released under a job stream, an edge node and the leader lost, each under
bounded load through the gateways with retrying and non-retrying clients (tests/swarm/load.py).

The figures of each scenario are printed (-s) and kept in docs/scaling.md with this command:
    .venv/bin/python -m pytest tests/swarm/test_stack_on_swarm.py -s
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from .cluster import SwarmCluster, wait_for
from .load import Load
from .probe import Probe
from .scenario import deployed_stack, edges, gateway_errors, rebalance_onto, report, responses_after, running
from .stack import SERVER_NAME, DeployedStack, base_config, secrets


@pytest.fixture(scope="module")
def stack(swarm: SwarmCluster, nginx_image: str, registry, tmp_path_factory) -> Iterator[DeployedStack]:
    yield from deployed_stack(swarm, nginx_image, registry, tmp_path_factory.mktemp("tls"))


def test_1_deploy_from_nothing_every_service_converges_and_every_route_serves(swarm, stack):
    started = time.monotonic()
    result = stack.apply()
    deploy_seconds = time.monotonic() - started
    api, workers = stack.service_name("blue"), stack.workers_service
    assert len(running(swarm, api)) == 3 and len(running(swarm, workers)) == 2
    assert "swarm-check" in result.commands and "gateway-1-config" in result.commands and "gateway-2-config" in result.commands
    with Load(edges(swarm, stack), SERVER_NAME, clients=1) as load:
        time.sleep(3)
    for outcome in load.requests(True) + load.requests(False):
        assert outcome.ok, outcome
    assert {o.edge for o in load.requests(True)} == set(stack.edges)
    assert {o.pool for o in load.requests(True)} == {"blue"}
    report("deploy", deploy_seconds=round(deploy_seconds, 1), **load.summary())


def test_2_release_switch_and_rollback_without_a_failed_request(swarm, stack):
    with Load(edges(swarm, stack), SERVER_NAME) as load:
        time.sleep(1)
        started = time.monotonic()
        stack.apply(apiGreenImage=stack.images["carecircle-standin/api:2"], apiGreenReplicas=3)
        release_seconds = time.monotonic() - started
        green = stack.service_name("green")
        assert len(running(swarm, green)) == 3
        # The idle pool answers on each edge node's preview listener (the host's 127.0.0.1:8081) before the switch.
        for node in stack.edges:
            preview = swarm[node].netns_run("wget", "-q", "-O", "-", "-S", "http://127.0.0.1:8081/api/preview", check=False)
            assert "x-standin-pool: green" in preview.stderr.decode().lower(), preview.stderr.decode()[-500:]
        assert responses_after(load, load.elapsed()) <= {("blue", "1")}
        switch_at = load.elapsed()
        started = time.monotonic()
        stack.apply(apiActiveColor="green")
        switch_seconds = time.monotonic() - started
        switched = wait_for("only green answering", lambda: load.elapsed() - switch_at > 1 and responses_after(
            load, load.elapsed() - 0.5) == {("green", "2")}, timeout=30) and load.elapsed()
        rollback_at = load.elapsed()
        stack.apply(apiActiveColor="blue")
        rolled_back = wait_for("only blue answering", lambda: load.elapsed() - rollback_at > 1 and responses_after(
            load, load.elapsed() - 0.5) == {("blue", "1")}, timeout=30) and load.elapsed()
        time.sleep(2)
    assert not load.failed(True), load.failed(True)[:5]
    report("release", release_seconds=round(release_seconds, 1), switch_apply_seconds=round(switch_seconds, 1),
           switch_to_only_green_seconds=round(switched - switch_at, 1), rollback_to_only_blue_seconds=round(rolled_back - rollback_at, 1),
           **load.summary())


def dns_sampler(probe: Probe, name: str, samples: list[int], stop) -> None:
    while not stop.is_set():
        samples.append(len(probe.resolve(name)))
        stop.wait(0.3)


def test_3_rolling_update_of_the_active_pool_keeps_n_minus_1_replicas_serving(swarm, stack, swarm_resources):
    import hashlib
    import threading

    api = stack.service_name("blue")
    probe = swarm_resources.probe("node3", [stack.network("edge")])
    assert len(probe.resolve(f"tasks.{api}")) == 3
    rotated = "postgresql://carecircle:second-password@db.carecircle.test:5432/carecircle?sslmode=require"
    old_secrets = {s.name for s in swarm["node1"].client.secrets.list()}
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=dns_sampler, args=(probe, f"tasks.{api}", samples, stop), daemon=True)
    with Load(edges(swarm, stack), SERVER_NAME) as load:
        sampler.start()
        started = time.monotonic()
        stack.stack_secrets["carecircle:databaseUrl"] = rotated
        stack.apply(apiMemoryMb=320)
        rollout_seconds = time.monotonic() - started
        stop.set()
        sampler.join(timeout=10)
        time.sleep(1)
    assert stack.service_name("blue") == api  # updated in place, not replaced
    fingerprint = hashlib.sha256(rotated.encode()).hexdigest()[:12]
    answers = {probe.get(f"http://{t.addresses[stack.network('edge')]}:3000/live")["headers"]["x-standin-database"]
               for t in running(swarm, api)}
    assert answers == {fingerprint}  # every replica reads the new secret
    spec = swarm["node1"].client.api.inspect_service(api)["Spec"]["TaskTemplate"]
    assert spec["Resources"]["Limits"]["MemoryBytes"] == 320 * 1024 * 1024
    assert "DATABASE_URL" not in json.dumps(spec["ContainerSpec"].get("Env", [])).replace("DATABASE_URL_FILE", "")
    now_secrets = {s.name for s in swarm["node1"].client.secrets.list()}
    assert len(old_secrets - now_secrets) == 1 and len(now_secrets - old_secrets) == 1  # rotated: new one in, old one gone
    assert min(samples) >= 2, samples  # never fewer than N-1 replicas in the gateways' upstream
    assert not load.failed(True), load.failed(True)[:5]
    report("rolling update", rollout_seconds=round(rollout_seconds, 1), dns_samples=len(samples), min_replicas_in_dns=min(samples),
           max_replicas_in_dns=max(samples), **load.summary())


def test_4_a_rollout_that_fails_its_healthcheck_rolls_back_and_fails_the_apply(swarm, stack):
    api = stack.service_name("blue")
    before = {t.id for t in running(swarm, api)}
    with Load(edges(swarm, stack), SERVER_NAME) as load:
        started = time.monotonic()
        with pytest.raises(Exception) as failed:
            stack.apply(apiBlueImage=stack.images["carecircle-standin/api:broken"])
        failed_after = time.monotonic() - started
        time.sleep(1)
    message = str(failed.value)
    assert "rollback" in message.lower(), message
    state = swarm["node1"].client.api.inspect_service(api).get("UpdateStatus", {}).get("State")
    assert state in ("rollback_started", "rollback_completed"), state
    assert {t.id for t in running(swarm, api)} == before  # the old replicas never stopped
    assert not load.failed(True) and not load.failed(False), (load.failed(True) + load.failed(False))[:5]
    assert responses_after(load, 0) == {("blue", "1")}
    report("failed rollout", failed_after_seconds=round(failed_after, 1), error=next(line for line in message.splitlines() if "rollback" in line.lower())[:200], **load.summary())
    wait_for("the rollback to finish", lambda: swarm["node1"].client.api.inspect_service(api)["UpdateStatus"]["State"]
             == "rollback_completed", timeout=120)
    # `pulumi up` again, unchanged (a flaky release retried): the state the provider recorded says "broken image",
    # what runs is the rolled-back spec. With `refresh: always` the plan sees that, and the rollout is re-applied.
    started = time.monotonic()
    with pytest.raises(Exception, match="rollback"):
        stack.apply()
    retried_after = time.monotonic() - started
    retried = stack.applier.history[-1]
    assert retried.refreshed.get(api.rsplit("-", 1)[0]) == ["taskSpec.containerSpec.image"]
    assert retried.requests_to("POST", r"/services/.*/update"), "the failed rollout was not re-applied"
    wait_for("the second rollback to finish", lambda: swarm["node1"].client.api.inspect_service(api)["UpdateStatus"]["State"]
             == "rollback_completed", timeout=120)
    # Then with the image fixed: a rollout that completes, and the pool serves the release that works.
    stack.apply(apiBlueImage=stack.images["carecircle-standin/api:1"])
    assert {t.raw["Spec"]["ContainerSpec"]["Image"] for t in running(swarm, api)} == {stack.images["carecircle-standin/api:1"]}
    report("failed rollout re-applied", retried_after_seconds=round(retried_after, 1))


class Queue:
    """The queue stand-in the workers take jobs from, published on node3 for the test to feed and read."""

    def __init__(self, cluster: SwarmCluster, networks: list[str]):
        import docker

        from .stack import QUEUE_HOST, QUEUE_PORT

        self.cluster = cluster
        self.url = f"http://{cluster['node3'].address}:16380"
        # On the workers' internal backend network, and on egress so that its port can be published.
        self.service = cluster.manager().client.services.create(
            cluster.images["carecircle-standin/queue:1"], name=QUEUE_HOST, networks=networks, env=[f"PORT={QUEUE_PORT}", "LEASE_SECONDS=20"],
            endpoint_spec=docker.types.EndpointSpec(mode="dnsrr", ports={16380: (QUEUE_PORT, "tcp", "host")}),
            constraints=["node.hostname==node3"])
        try:
            wait_for("the queue", lambda: self.stats() is not None, timeout=60)
        except Exception:
            self.remove()
            raise

    def call(self, method: str, path: str):
        import urllib.request

        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, method=method), timeout=3) as response:
                return json.loads(response.read() or b"null")
        except OSError:
            return None

    def stats(self):
        return self.call("GET", "/stats")

    def remove(self) -> None:
        self.service.remove()


def test_5_workers_release_under_a_job_stream_keeps_a_worker_running_and_loses_no_job(swarm, stack):
    import threading

    queue = Queue(swarm, [stack.network("backend"), stack.network("egress")])
    try:
        workers = stack.workers_service
        queue.call("POST", "/enqueue?count=4&ms=50")
        wait_for("the workers to find the queue", lambda: (queue.stats() or {}).get("acked", 0) >= 4, timeout=120, interval=1)
        queue.call("POST", "/reset")
        stop = threading.Event()
        running_samples: list[int] = []

        def produce() -> None:
            while not stop.is_set():
                queue.call("POST", "/enqueue?count=1&ms=150")
                stop.wait(0.1)

        def sample() -> None:
            while not stop.is_set():
                running_samples.append(len(running(swarm, workers)))
                stop.wait(0.5)

        threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=sample, daemon=True)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        started = time.monotonic()
        stack.apply(workersImage=stack.images["carecircle-standin/workers:2"])
        release_seconds = time.monotonic() - started
        time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        drained = wait_for("every job acknowledged", lambda: (lambda s: s if s and s["pending"] == 0 and s["inFlight"] == 0 else None)(
            queue.stats()), timeout=90, interval=1)
        assert drained["enqueued"] > 50 and drained["acked"] == drained["enqueued"], drained  # no job lost
        assert min(running_samples) >= 1, running_samples  # never without a worker
        versions = {t.raw["Spec"]["ContainerSpec"]["Image"] for t in running(swarm, workers)}
        assert versions == {stack.images["carecircle-standin/workers:2"]}
        report("workers release", release_seconds=round(release_seconds, 1), jobs_enqueued=drained["enqueued"],
               jobs_acked=drained["acked"], redelivered=drained["redelivered"], duplicate_acks=drained["duplicateAcks"],
               min_running_workers=min(running_samples), samples=len(running_samples), acks_per_worker_pool=drained["perPool"])
    finally:
        queue.remove()


def test_6_losing_an_edge_node_with_api_replicas_keeps_serving_through_the_other(swarm, stack, swarm_resources):
    api = stack.service_name("blue")
    # node2: an edge node and an app node, but not the manager the stack is applied through.
    victim, survivor = "node2", "node1"
    rebalance_onto(swarm, api, victim)
    probe = swarm_resources.probe(survivor, [stack.network("edge")])
    try:
        # A client waits longer than the gateway's connect timeout to a lost replica (1 s). Requests sent
        # while the node dies, or over a kept-alive upstream connection to it, wait for an answer that
        # never comes (gatewayProxyReadTimeout): the client's own timeout ends them.
        with Load(edges(swarm, stack), SERVER_NAME, timeout=10) as load:
            time.sleep(2)
            killed_at, killed_epoch = load.elapsed(), time.time()
            swarm.kill_node(victim)
            down_after = swarm.wait_node_state(victim, "down", timeout=90)
            full = wait_for("the pool back to 3 replicas", lambda: (lambda r: r if len(r) == 3 and all(t.node != victim for t in r) else None)(
                running(swarm, api)), timeout=120, interval=1)
            full_at = load.elapsed()
            live = {t.addresses[stack.network("edge")] for t in full}
            wait_for("DNS to hold only live replicas", lambda: set(probe.resolve(f"tasks.{api}")) == live, timeout=60)
            time.sleep(8)  # past the gateways' resolver validity: they hold only live replicas too
            settled_at = load.elapsed()
            time.sleep(4)
        retrying_failures = load.failed(True, after=killed_at + 1)
        assert not retrying_failures, retrying_failures[:5]
        answered_late = {o.task for o in load.requests(True) + load.requests(False) if o.ok and o.at >= settled_at}
        assert answered_late <= {t.raw["Status"]["ContainerStatus"]["ContainerID"][:12] for t in full}
        assert not [o for o in load.requests(False) if not o.ok and o.at >= settled_at and o.edge != victim]
        slow = [o for o in load.requests(True) if o.ok and killed_at <= o.at]
        first_second = [o for o in load.failed(True, after=killed_at) if o.at < killed_at + 1]
        taken_out = load.out_of_service_after(victim, killed_at)
        assert taken_out is not None, "the balancer never noticed the lost edge node"
        waited = [o for o in load.requests(True) if o.at >= killed_at and o.first_error.startswith(f"{survivor}:")]
        report("edge node lost", node_down_seconds=round(down_after, 1), pool_full_again_seconds=round(full_at - killed_at, 1),
               balancer_took_the_edge_out_seconds=round(taken_out, 1),
               survivor_gateway_errors=dict(gateway_errors(swarm, survivor, killed_epoch - 1)),
               retrying_first_tries_failed_at_the_live_edge=[(round(o.at - killed_at, 2), o.first_error) for o in waited],
               retrying_failed_in_first_second=[(round(o.at - killed_at, 2), o.first_error, o.error) for o in first_second],
               retrying_failed_after_first_second=len(retrying_failures), retrying_requests_after_kill=len(slow),
               slowest_retrying_success_after_kill=round(max((o.took for o in slow), default=0), 1),
               plain_failed_through_the_other_edge=[(round(o.at - killed_at, 2), o.status, o.error)
                                                    for o in load.failed(False) if o.edge != victim][:10],
               **load.summary())
    finally:
        swarm.restart_node(victim)
        wait_for(f"{victim} ready", lambda: swarm.node_state(victim) == "ready", timeout=90)


def leader(cluster: SwarmCluster, via: str) -> str:
    """The hostname of the leader manager, as node `via` sees it ("" while there is none)."""
    for node in cluster[via].client.api.nodes():
        if (node.get("ManagerStatus") or {}).get("Leader"):
            return node["Description"]["Hostname"]
    return ""


def test_7_losing_the_leader_manager_elects_another_serving_goes_on_and_the_next_apply_succeeds(make_swarm, nginx_image, tmp_path):
    # The leader (node1, which formed the swarm) runs api replicas but no gateway: its loss is a manager's loss.
    cluster = make_swarm(labels={"node1": {"carecircle.monitoring": "true", "carecircle.apps": "true"},
                                 "node2": {"carecircle.edge": "true", "carecircle.apps": "true"},
                                 "node3": {"carecircle.edge": "true", "carecircle.apps": "true"}})
    from .conftest import start_registry
    from .images import build_nginx_image

    build_nginx_image(cluster)
    served = start_registry(cluster, ["carecircle-standin/api:1", "carecircle-standin/workers:1"])
    config = base_config(tmp_path / "tls", client_cidr=f"{cluster.gateway}/32", images=served.pinned)
    config["carecircle:gatewayImage"] = nginx_image
    deployed = DeployedStack(cluster, config, secrets(served.server.registry_auth()), manager="node1", edges=("node2", "node3"))
    try:
        deployed.apply()
        assert leader(cluster, "node2") == "node1"
        api = deployed.service_name("blue")
        with Load(edges(cluster, deployed), SERVER_NAME, timeout=10) as load:
            time.sleep(2)
            killed_at = load.elapsed()
            cluster.kill_node("node1")
            elected = wait_for("a new leader", lambda: leader(cluster, "node2") in ("node2", "node3"), timeout=120, interval=1)
            elected_at = load.elapsed()
            wait_for("the pool back to 3 replicas", lambda: len([t for t in running(cluster, api) if t.node != "node1"]) == 3,
                     timeout=150, interval=1)
            full_at = load.elapsed()
            deployed.use_manager("node2")
            started = time.monotonic()
            deployed.apply(apiMemoryMb=288)  # a rolling update, through a surviving manager
            apply_seconds = time.monotonic() - started
            time.sleep(2)
        assert elected
        spec = cluster["node2"].client.api.inspect_service(api)["Spec"]["TaskTemplate"]
        assert spec["Resources"]["Limits"]["MemoryBytes"] == 288 * 1024 * 1024
        assert not load.failed(True), load.failed(True)[:5]
        report("leader lost", new_leader_seconds=round(elected_at - killed_at, 1), pool_full_again_seconds=round(full_at - killed_at, 1),
               apply_through_surviving_manager_seconds=round(apply_seconds, 1), **load.summary())
    finally:
        cluster.restart_node("node1")
        wait_for("node1 ready", lambda: cluster.node_state("node1") == "ready", timeout=120)
        deployed.destroy()
        served.server.stop()


def test_8_the_preflight_refuses_a_cluster_that_is_not_what_the_stack_says(swarm, stack, make_swarm):
    """The preflight command the stack declares, run as declared: it passes on the real cluster, and stops
    `pulumi up` with the fix when docker:host is not a manager or a node lacks its label."""
    import subprocess

    from .stack import EDGE_HOSTS, MANAGER_HOST

    declared = next(r for r in stack.evaluate().resources if r.name == "swarm-check")

    def preflight(manager: str, edges: list[str]) -> subprocess.CompletedProcess:
        command = declared.inputs["create"]
        for address, url in zip(EDGE_HOSTS, edges, strict=True):
            command = command.replace(address, url)
        return subprocess.run(["sh", "-c", command], env={"PATH": "/usr/bin:/bin:/usr/sbin", "DOCKER_HOST": manager},
                              capture_output=True, text=True, timeout=60)

    assert declared.inputs["environment"] == {"DOCKER_HOST": MANAGER_HOST}
    ok = preflight(swarm["node1"].host_url, [swarm["node1"].host_url, swarm["node2"].host_url])
    assert ok.returncode == 0, ok.stderr
    unlabelled = preflight(swarm["node1"].host_url, [swarm["node1"].host_url, swarm["node3"].host_url])
    assert unlabelled.returncode == 1
    assert "is not labelled carecircle.edge=true: docker node update --label-add carecircle.edge=true" in unlabelled.stderr
    # Edge nodes labelled, no node for the apps: the api and workers would stay pending forever.
    small = make_swarm(managers=1, workers=1, images=False, labels={"node1": {"carecircle.edge": "true"},
                                                                    "node2": {"carecircle.edge": "true"}})
    manager = next(node for node in (small["node1"], small["node2"]) if node.role == "manager")
    no_apps = preflight(manager.host_url, [small["node1"].host_url, small["node2"].host_url])
    assert no_apps.returncode == 1 and "no active, ready node is labelled carecircle.apps=true" in no_apps.stderr, no_apps
    worker = next(node for node in (small["node1"], small["node2"]) if node.role == "worker")
    not_manager = preflight(worker.host_url, [worker.host_url, worker.host_url])
    assert not_manager.returncode == 1 and "is not a swarm manager" in not_manager.stderr and "docker:host must be one" in not_manager.stderr
    elsewhere = preflight(swarm["node1"].host_url, [swarm["node1"].host_url, worker.host_url])
    assert elsewhere.returncode == 1 and "is in another swarm" in elsewhere.stderr
    report("preflight", passes=ok.stdout.strip(), refuses=[unlabelled.stderr.strip(), no_apps.stderr.strip(), not_manager.stderr.strip(),
                                                           elsewhere.stderr.strip()])
