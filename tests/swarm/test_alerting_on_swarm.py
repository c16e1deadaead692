"""Alerting proven on the real 3-manager swarm: the staging stack with monitoring on, a Prometheus and
an Alertmanager on each of two monitoring nodes (node3, node2), the real binaries in stand-in images
(tests/swarm/monitoring_images.py), configured by exactly what the stack declares and applied as
`pulumi up` applies it. A local HTTPS webhook receiver (the host end of the swarm's bridge) counts what
reaches a person (/webhook) and the dead man's switch (/deadman). Under load through both gateways:

1. every target up in both Prometheus (api tasks through tasks.*, each nginx exporter reading its gateway,
   every Prometheus and Alertmanager), the Alertmanagers one cluster, the Watchdog pinging once per interval;
2. the api pool made to fail: exactly one notification, then exactly one resolved;
3. the node of the Alertmanager that sent that notification killed during a second incident: still exactly
   one notification (the survivor knows it was sent) and one resolved, the loss itself notified (TargetDown);
4. new rules and a new receiver URL reloaded in place: nothing restarts;
5. docs/scaling.md's node maintenance on the first monitoring node (drain, daemon restarted, active, its exited
   containers removed, `pulumi up`): every target up again, one cluster, the Watchdog pinging.

The figures are printed (-s) and kept in docs/observability.md with this command:
    .venv/bin/python -m pytest tests/swarm/test_alerting_on_swarm.py -s
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections import Counter

import pytest
from alert_receivers import HttpReceiver, Received

from engine_apply.errors import EngineError

from .cluster import SwarmCluster, wait_for
from .load import Load
from .probe import Probe, tasks
from .scenario import availability, edges, report
from .stack import SERVER_NAME, STACK, DeployedStack, alerting_secrets, base_config, monitoring_config, secrets

PROMETHEUS = ["carecircle-staging-prometheus-1", "carecircle-staging-prometheus-2"]
ALERTMANAGERS = ["carecircle-staging-alertmanager-1", "carecircle-staging-alertmanager-2"]
# The staging stack serves TLS: the blackbox exporter probes each gateway's certificate (gateway-certificate).
EXPECTED_TARGETS = {"prometheus": 2, "alertmanager": 2, "api": 3, "nginx": 2, "gateway-certificate": 2}
# Past the second Alertmanager's turn (--cluster.peer-timeout, 15 s).
HOLD_SECONDS = 22
# The second Alertmanager decides 15 s after each check of a group: a check made before a resolution and
# decided after the next firing of the same alert sends a stale "resolved", then "firing" again
# (notify.DedupStage.needsUpdate). Past its turn and a group interval (16 s), a new incident is clean.
QUIET_SECONDS = 35


@pytest.fixture(scope="module")
def receiver(swarm: SwarmCluster, receivers_tls):
    with HttpReceiver(address=swarm.gateway, tls=receivers_tls) as listening:
        yield listening


@pytest.fixture(scope="module")
def alerting(swarm, nginx_image, registry, monitoring_images, receiver, tmp_path_factory) -> DeployedStack:
    config = base_config(tmp_path_factory.mktemp("tls"), client_cidr=f"{swarm.gateway}/32", images=registry.pinned)
    config["carecircle:gatewayImage"] = nginx_image
    config.update(monitoring_config(monitoring_images))
    deployed = DeployedStack(swarm, config, {**secrets(registry.server.registry_auth()),
                                             **alerting_secrets(receiver.url("/webhook"), receiver.url("/deadman"))})
    deployed.images = registry.pinned
    try:
        yield deployed
    finally:
        deployed.destroy()


@pytest.fixture
def probe(swarm_resources, alerting) -> Probe:
    """A container on node1 (never lost here), on the deployed stack's backend network: Prometheus, the api tasks."""
    return swarm_resources.probe("node1", [alerting.network("backend")])


def query(probe: Probe, prometheus: str, expr: str) -> dict[str, float]:
    """instance -> value of an instant query on one Prometheus."""
    answer = probe.get(f"http://{prometheus}:9090/api/v1/query?query={urllib.parse.quote(expr)}")
    result = json.loads(answer["body"])["data"]["result"]
    return {r["metric"].get("instance", ""): float(r["value"][1]) for r in result}


def targets_up(probe: Probe, prometheus: str) -> Counter:
    answer = probe.get(f"http://{prometheus}:9090/api/v1/targets?state=active")
    active = json.loads(answer["body"])["data"]["activeTargets"]
    if any(t["health"] != "up" for t in active):
        return Counter()
    return Counter(t["labels"]["job"] for t in active)


def every_target_up(probe: Probe) -> bool:
    return all(targets_up(probe, prometheus) == EXPECTED_TARGETS for prometheus in PROMETHEUS)


def notified(receiver: HttpReceiver, alertname: str, status: str, since: float) -> list[Received]:
    return [r for r in receiver.at("/webhook") if r.at >= since and r.body["status"] == status
            and r.body["groupLabels"].get("alertname") == alertname]


def alertmanager_containers(cluster: SwarmCluster) -> dict[str, tuple[str, str]]:
    """hostname (the short container id Alertmanager puts in externalURL) -> (container name, node)."""
    found = {}
    for node in cluster.nodes.values():
        if node.alive:
            for container in node.client.containers.list(filters={"name": "carecircle-staging-alertmanager-"}):
                found[container.attrs["Config"]["Hostname"]] = (container.name, node.name)
    return found


def diagnosis(cluster: SwarmCluster) -> str:
    """What the Alertmanagers logged (warnings, errors) and counted, and what the Prometheus sent (for an
    assertion's message; also printed, as pytest shortens long messages)."""
    lines = []
    for node in cluster.nodes.values():
        if node.alive:
            for container in node.client.containers.list(filters={"name": "carecircle-staging-prometheus-"}):
                metrics = container.exec_run(["wget", "-q", "-O", "-", "http://127.0.0.1:9090/metrics"]).output.decode(errors="replace")
                lines += [f"{container.name}: {line}" for line in metrics.splitlines() if line.startswith("prometheus_notifications_")]
                logged = container.logs(tail=400).decode(errors="replace").splitlines()
                lines += [f"{container.name}: {line}" for line in logged if "level=warn" in line or "level=error" in line][-5:]
            for container in node.client.containers.list(filters={"name": "carecircle-staging-alertmanager-"}):
                logged = container.logs(tail=400).decode(errors="replace").splitlines()
                lines += [f"{container.name}: {line}" for line in logged if "level=warn" in line or "level=error" in line][-10:]
                metrics = container.exec_run(["wget", "-q", "-O", "-", "http://127.0.0.1:9093/metrics"]).output.decode(errors="replace")
                lines += [f"{container.name}: {line}" for line in metrics.splitlines() if line.startswith((
                    'alertmanager_notifications_total{integration="webhook"}', 'alertmanager_notifications_failed_total{integration="webhook"}',
                    "alertmanager_alerts{", "alertmanager_cluster_members", "alertmanager_peer_position",
                    "alertmanager_config_last_reload_successful "))]
    print("\n".join(lines))
    return "\n".join(lines)


def arrived(cluster: SwarmCluster, what: str, check, timeout: float = 90) -> list[Received]:
    """wait_for a notification; on timeout, say what the Alertmanagers logged."""
    try:
        return wait_for(what, check, timeout=timeout)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{diagnosis(cluster)}") from None


def sender(cluster: SwarmCluster, notification: Received) -> tuple[str, str]:
    """(Alertmanager, node) that sent a notification (a container of a lost node: its hostname, "?")."""
    host = urllib.parse.urlsplit(notification.body["externalURL"]).hostname
    return alertmanager_containers(cluster).get(host, (host, "?"))


def described(notifications: list[Received], since: float) -> list[tuple]:
    """When and what each notification said (for an assertion's message)."""
    return [(round(r.at - since, 1), r.body["externalURL"], r.body["status"],
             [(a["status"], a["startsAt"], a["endsAt"]) for a in r.body["alerts"]]) for r in notifications]


def inject(cluster: SwarmCluster, deployed: DeployedStack, probe: Probe, status: int, skip_node: str = "") -> int:
    """Make every running replica of the active pool answer `status` (0: normally again); returns how many."""
    service, backend = deployed.service_name("blue"), deployed.network("backend")
    urls = [f"http://{t.addresses[backend]}:3000/_standin/errors?status={status}" for t in tasks(cluster, service)
            if t.state == "running" and t.node != skip_node]
    answers = probe.post_many(urls)
    assert all(a.get("status") == 200 for a in answers), answers
    return len(urls)


def counters(probe: Probe, prometheus: str) -> dict[str, dict[str, float]]:
    """What each Prometheus sent and each Alertmanager received and sent (webhook notifications: to the
    webhook receiver and to the dead man's switch alike), as one Prometheus scraped them."""
    return {
        "alerts_received": query(probe, prometheus, 'sum by (instance) (alertmanager_alerts_received_total{status="firing"})'),
        "webhook_notifications": query(probe, prometheus, 'sum by (instance) (alertmanager_notifications_total{integration="webhook"})'),
        "prometheus_alerts_sent": query(probe, prometheus, "sum by (instance) (prometheus_notifications_sent_total)"),
    }


def delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    return {key: {instance.split(":")[0]: int(value - before[key].get(instance, 0)) for instance, value in sorted(values.items())}
            for key, values in after.items()}


def test_1_every_target_is_up_and_the_alertmanagers_are_one_cluster(swarm, alerting, receiver, swarm_resources):
    started = time.monotonic()
    alerting.apply()
    deploy_seconds, deployed_at = time.monotonic() - started, time.time()
    probe = swarm_resources.probe("node1", [alerting.network("backend")])
    with Load(edges(swarm, alerting), SERVER_NAME, clients=1) as load:
        wait_for("every target up in both Prometheus", lambda: every_target_up(probe), timeout=120, interval=1)
        up_after = time.monotonic() - started
        time.sleep(3)
        for prometheus in PROMETHEUS:
            # Each exporter reads its gateway's stub_status over the edge overlay, which the status listener allows.
            assert query(probe, prometheus, "nginx_up") == {f"carecircle-staging-nginx-exporter-{i}:9113": 1.0 for i in (1, 2)}
            assert sum(query(probe, prometheus, "nginx_http_requests_total").values()) > 0
            # The certificate each edge's gateway serves, read from the monitoring node (issue 19's expiry watch).
            gateways = [f"carecircle-staging-gateway-{i}:8443" for i in (1, 2)]
            assert query(probe, prometheus, 'probe_success{job="gateway-certificate"}') == dict.fromkeys(gateways, 1.0)
            expiry = query(probe, prometheus, 'probe_ssl_earliest_cert_expiry{job="gateway-certificate"}')
            assert sorted(expiry) == gateways and all(value > time.time() for value in expiry.values())
            wait_for("both Alertmanagers in one cluster of 2", lambda prometheus=prometheus: sorted(
                query(probe, prometheus, "alertmanager_cluster_members").values()) == [2.0, 2.0], timeout=30)
            assert query(probe, prometheus, 'ALERTS{alertstate="firing",alertname!="Watchdog"}') == {}
        # Prometheus drops an alert that fires before it knows its Alertmanagers (the first seconds after a
        # configuration is loaded) and sends it again after --rules.alert.resend-delay (1m): so the first ping.
        first_ping = arrived(swarm, "the first Watchdog ping", lambda: receiver.at("/deadman"), timeout=120)[0]
        first_ping_after = first_ping.at - deployed_at
        window_start = time.time()
        time.sleep(16)
    assert not load.failed(True), load.failed(True)[:5]
    pings = [r for r in receiver.at("/deadman") if r.at >= window_start]
    gaps = [round(b.at - a.at, 1) for a, b in zip(pings, pings[1:], strict=False)]
    # Two Prometheus send the Watchdog to two Alertmanagers, each of which would ping every 4-5 s on its own:
    # the switch hears it about once per interval. (The second Alertmanager checks 15 s late whether the first
    # pinged within the last 4 s, so now and then both ping together: harmless for a dead man's switch; an
    # incident's repeat interval, hours, leaves no such window.)
    assert 3 <= len(pings) <= 16 // 4 + 1, (gaps, [(round(r.at - window_start, 1), r.path) for r in receiver.received], diagnosis(swarm))
    assert receiver.at("/webhook") == []
    report("alerting: deploy", deploy_seconds=round(deploy_seconds, 1), every_target_up_seconds=round(up_after, 1),
           targets_per_prometheus=dict(EXPECTED_TARGETS), first_watchdog_ping_after_deploy_seconds=round(first_ping_after, 1),
           watchdog_pings_in_16s=len(pings), watchdog_gaps_seconds=gaps,
           watchdog_senders=dict(Counter(sender(swarm, p)[0] for p in pings)), **load.summary())


def test_2_a_failing_api_pool_notifies_once_then_resolves_once(swarm, alerting, receiver, probe):
    before = counters(probe, PROMETHEUS[0])
    with Load(edges(swarm, alerting), SERVER_NAME) as load:
        time.sleep(2)
        failed_at = time.time()
        replicas = inject(swarm, alerting, probe, 500)
        first = arrived(swarm, "the firing notification", lambda: notified(receiver, "HighErrorRate", "firing", failed_at), timeout=90)[0]
        time.sleep(HOLD_SECONDS)
        recovered_at = time.time()
        inject(swarm, alerting, probe, 0)
        resolved = arrived(swarm, "the resolved notification", lambda: notified(receiver, "HighErrorRate", "resolved", recovered_at),
                            timeout=90)[0]
        time.sleep(6)
    firing = notified(receiver, "HighErrorRate", "firing", failed_at)
    if len(firing) != 1:
        print(*described(receiver.at("/webhook"), failed_at), sep="\n")
    assert len(firing) == 1 and len(notified(receiver, "HighErrorRate", "resolved", failed_at)) == 1, "printed above"
    assert [a["labels"]["severity"] for a in first.body["alerts"]] == ["critical"]
    assert first.body["alerts"][0]["annotations"]["runbook_url"].endswith("/docs/runbooks.md#higherrorrate")
    others = [r.body["groupLabels"] for r in receiver.at("/webhook") if r.at >= failed_at and r.body["groupLabels"].get("alertname")
              != "HighErrorRate"]
    assert others == []
    counted = delta(counters(probe, PROMETHEUS[0]), before)
    # Both Alertmanagers received the alerts (from both Prometheus), and the receiver still heard once.
    assert all(counted["alerts_received"][name] > 0 for name in ALERTMANAGERS), counted
    report("alerting: incident", failing_replicas=replicas, failure_to_notification_seconds=round(first.at - failed_at, 1),
           recovery_to_resolved_seconds=round(resolved.at - recovered_at, 1), held_seconds=HOLD_SECONDS,
           firing_notifications=len(firing), resolved_notifications=1,
           notified_by=sender(swarm, first)[0], resolved_by=sender(swarm, resolved)[0], **counted,
           retrying_failed=len(load.failed(True)), plain_failed=len(load.failed(False)))


def test_3_the_node_of_the_alertmanager_that_notified_is_lost_mid_incident_and_still_one_notification(
        swarm, alerting, receiver, probe):
    victim = None
    # A new incident of the same alert within one Alertmanager turn (15 s) plus a group interval of the last
    # one's resolution can be notified resolved and firing again (see QUIET_SECONDS): start after that.
    last = max((r.at for r in receiver.at("/webhook")), default=0.0)
    time.sleep(max(0.0, last + QUIET_SECONDS - time.time()))
    try:
        with Load(edges(swarm, alerting), SERVER_NAME, timeout=10) as load:
            time.sleep(2)
            failed_at = time.time()
            replicas = inject(swarm, alerting, probe, 500)
            first = arrived(swarm, "the firing notification", lambda: notified(receiver, "HighErrorRate", "firing", failed_at))[0]
            # Lose the node of the Alertmanager that sent it: the other one must know it was sent.
            notifier, victim = sender(swarm, first)
            assert victim in alerting.monitoring
            survivor = next(name for name in ALERTMANAGERS if name != notifier)
            surviving_prometheus = PROMETHEUS[ALERTMANAGERS.index(survivor)]
            lost = [notifier, PROMETHEUS[ALERTMANAGERS.index(notifier)]]
            before = counters(probe, surviving_prometheus)
            killed_at = time.time()
            swarm.kill_node(victim)
            down = arrived(swarm, "TargetDown for the lost Prometheus and Alertmanager", lambda: [
                r for r in notified(receiver, "TargetDown", "firing", killed_at)
                if {a["labels"]["instance"].split(":")[0] for a in r.body["alerts"]} >= set(lost)], timeout=120)[0]
            time.sleep(max(0.0, HOLD_SECONDS - (time.time() - killed_at)))
            recovered_at = time.time()
            inject(swarm, alerting, probe, 0, skip_node=victim)
            resolved = arrived(swarm, "the resolved notification", lambda: notified(receiver, "HighErrorRate", "resolved", recovered_at))[0]
            time.sleep(6)
        firing = notified(receiver, "HighErrorRate", "firing", failed_at)
        if len(firing) != 1:
            print("killed after", killed_at - failed_at, *described(receiver.at("/webhook"), failed_at), sep="\n")
        assert len(firing) == 1, "more than one notification of one incident (printed above)"
        assert len(notified(receiver, "HighErrorRate", "resolved", failed_at)) == 1
        assert sender(swarm, resolved)[0] == survivor
        pings = [r.at for r in receiver.at("/deadman") if r.at >= killed_at]
        assert pings and max(b - a for a, b in zip([killed_at, *pings], [*pings, time.time()], strict=True)) < 25  # never silent
        report("alerting: monitoring node lost mid-incident", failing_replicas=replicas, lost_node=victim, lost=lost,
               failure_to_notification_seconds=round(first.at - failed_at, 1), notified_by=notifier,
               kill_to_target_down_notification_seconds=round(down.at - killed_at, 1),
               target_down_instances=sorted(a["labels"]["instance"] for a in down.body["alerts"]),
               recovery_to_resolved_seconds=round(resolved.at - recovered_at, 1), resolved_by=sender(swarm, resolved)[0],
               firing_notifications=len(firing), resolved_notifications=1, watchdog_pings_after_kill=len(pings),
               watchdog_longest_silence_after_kill_seconds=round(max(b - a for a, b in zip([killed_at, *pings[:-1]], pings, strict=True)), 1),
               survivor_counters=delta(counters(probe, surviving_prometheus), before), retrying_failed=len(load.failed(True)),
               plain_failed=len(load.failed(False)))
    finally:
        if victim is not None:
            swarm.restart_node(victim)
            wait_for(f"{victim} ready", lambda: swarm.node_state(victim) == "ready", timeout=120)


def monitoring_containers(cluster: SwarmCluster) -> dict[str, tuple[str, str, int]]:
    """name -> (id, StartedAt, RestartCount) of every Prometheus and Alertmanager."""
    found = {}
    for node in cluster.nodes.values():
        for container in node.client.containers.list(filters={"name": "carecircle-staging-"}):
            if "-prometheus-" in container.name or "-alertmanager-" in container.name:
                found[container.name] = (container.id, container.attrs["State"]["StartedAt"], container.attrs["RestartCount"])
    return found


def test_4_new_rules_and_a_new_receiver_reload_in_place_without_restarting_anything(swarm, alerting, receiver, probe):
    wait_for("every target up again", lambda: every_target_up(probe), timeout=180, interval=1)
    before = monitoring_containers(swarm)
    assert sorted(before) == sorted(PROMETHEUS + ALERTMANAGERS)
    hashes = query(probe, PROMETHEUS[0], "alertmanager_config_hash")
    started = time.monotonic()
    alerting.stack_secrets["carecircle:alertDeadMansSwitchUrl"] = receiver.url("/deadman-2")
    result = alerting.apply(alertErrorRatePercent=7)
    applied_at, apply_seconds = time.time(), time.monotonic() - started
    assert sorted(name for name in result.commands if name.startswith("monitoring-")) == [
        "monitoring-alertmanager-1-config", "monitoring-alertmanager-2-config", "monitoring-prometheus-1-config",
        "monitoring-prometheus-2-config"]
    assert monitoring_containers(swarm) == before  # same containers, never restarted
    for prometheus in PROMETHEUS:
        rules = json.loads(probe.get(f"http://{prometheus}:9090/api/v1/rules")["body"])["data"]["groups"]
        error_rate = next(r for g in rules for r in g["rules"] if r["name"] == "HighErrorRate")
        assert error_rate["query"].endswith("> 0.07"), error_rate["query"]
    new_hashes = wait_for("both Alertmanagers on the new file", lambda: (lambda h: h if len(set(h.values())) == 1 else None)(
        query(probe, PROMETHEUS[0], "alertmanager_config_hash")), timeout=30)
    assert len(new_hashes) == 2 and set(new_hashes.values()).isdisjoint(hashes.values())
    moved = wait_for("a Watchdog ping on the new URL", lambda: receiver.at("/deadman-2"), timeout=30)[0]
    time.sleep(10)
    assert not [r for r in receiver.at("/deadman") if r.at > applied_at]
    report("alerting: reload in place", apply_seconds=round(apply_seconds, 1), containers_restarted=0,
           first_ping_on_new_url_after_apply_seconds=round(moved.at - applied_at, 1), pings_on_new_url=len(receiver.at("/deadman-2")))


def test_5_a_monitoring_node_drained_restarted_and_restored_monitors_again_after_its_containers_are_recreated(
        swarm, alerting, receiver, probe):
    """docs/scaling.md's node-maintenance procedure on the first monitoring node: drain, restart the daemon,
    activate, remove the stack's containers the restart left exited, `pulumi up`. Its Prometheus,
    Alertmanager and exporter are attached to the backend overlay, as a gateway is to the edge one."""
    node = alerting.monitoring[0]
    wait_for("every target up", lambda: every_target_up(probe), timeout=180, interval=1)

    def containers() -> dict[str, dict]:
        """The stack's own containers on the node (not Swarm's tasks) -> their State."""
        return {c.name: c.attrs["State"] for c in swarm[node].client.containers.list(all=True, filters={"label": f"com.carecircle.stack={STACK}"})
                if "com.docker.swarm.task.id" not in c.labels}

    before = containers()
    assert {name for name in PROMETHEUS + ALERTMANAGERS if name.endswith("-1")} <= set(before), before
    availability(swarm, node, "drain")
    try:
        restart = swarm.restart_daemon(node)
        swarm.wait_node_state(node, "ready", timeout=90)
    finally:
        availability(swarm, node, "active")
    activated_at = time.time()
    time.sleep(20)  # what the daemon does by itself once the node is active
    left = containers()
    left_by_the_daemon = {name: (state["Status"], state["Error"][:120]) for name, state in left.items()}
    # `pulumi up` alone: the refresh reads each one back stopped with must_run true, and the provider's update
    # starts it (kreuzwerker resourceDockerContainerUpdate); a figure, as the procedure does not rely on it.
    try:
        alerting.apply()
        alone = "completed"
    except EngineError as error:
        alone = str(error)[:200]
    print(f"\n[monitoring node maintenance] left by the daemon: {left_by_the_daemon}; pulumi up alone: {alone}")
    # The procedure: remove them on the node; the refresh then finds them gone and `pulumi up` creates them,
    # and applies each one's configuration (its trigger is the container's id).
    exited = swarm[node].docker("ps", "-aq", "--filter", f"label=com.carecircle.stack={STACK}", "--filter", "status=exited").stdout.split()
    if exited:
        swarm[node].docker("rm", *[i.decode() for i in exited])
    started = time.monotonic()
    result = alerting.apply()
    apply_seconds = time.monotonic() - started
    wait_for("every target up in both Prometheus", lambda: every_target_up(probe), timeout=120, interval=1)
    up_seconds = time.monotonic() - started
    wait_for("both Alertmanagers in one cluster of 2", lambda: all(sorted(query(probe, prometheus, "alertmanager_cluster_members").values())
                                                                   == [2.0, 2.0] for prometheus in PROMETHEUS), timeout=60)
    applied_at = time.time()
    # (test 4 moved the dead man's switch to /deadman-2)
    ping = arrived(swarm, "a Watchdog ping after the pulumi up", lambda: [
        r for r in receiver.received if r.path.startswith("/deadman") and r.at > applied_at])[0]
    after = containers()
    assert sorted(after) == sorted(before) and all(state["Status"] == "running" for state in after.values()), after
    # The daemon brought none back by itself (moby#32607, moby#35889 describe the same for a gateway).
    assert all(state["Status"] == "exited" for state in left.values()), left
    report("alerting: monitoring node drained, daemon restarted, restored", node=node,
           daemon_answering_seconds=round(restart["answering_seconds"], 1),
           left_by_the_daemon=left_by_the_daemon, pulumi_up_alone=alone, removed=len(exited),
           created_again=sorted(result.created),
           pulumi_up_seconds=round(apply_seconds, 1), every_target_up_after_pulumi_up_started_seconds=round(up_seconds, 1),
           watchdog_ping_after_apply_seconds=round(ping.at - applied_at, 1),
           target_down_notified=len(notified(receiver, "TargetDown", "firing", activated_at - 60)))
