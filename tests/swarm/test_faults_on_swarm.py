"""Faults beyond a clean node loss, on the real 3-manager swarm, under the load of tests/swarm/load.py:
an edge node's Docker daemon restarted the way docs/scaling.md's node-maintenance procedure says (drain,
restart, activate, `pulumi up`) and without the drain, an app node cut off from the others for 30 s with its
daemon left running, then healed, and the manager in docker:host (the leader, a follower) cut off mid-deploy,
the deploy run again through another manager while it is away.

The figures of each scenario are printed (-s) and kept in docs/scaling.md with this command:
    .venv/bin/python -m pytest tests/swarm/test_faults_on_swarm.py -s
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from .cluster import SwarmCluster, list_processes, run, wait_for
from .load import Load
from .scenario import availability, deployed_stack, edges, gateway_errors, rebalance_onto, report, running
from .stack import SERVER_NAME, DeployedStack


@pytest.fixture(scope="module")
def stack(swarm: SwarmCluster, nginx_image: str, registry, tmp_path_factory) -> Iterator[DeployedStack]:
    """The staging stack deployed, destroyed after the module."""
    stacks = deployed_stack(swarm, nginx_image, registry, tmp_path_factory.mktemp("tls"))
    deployed = next(stacks)
    try:
        deployed.apply()
        yield deployed
    finally:
        stacks.close()


def gateway_state(cluster: SwarmCluster, node: str) -> dict:
    """State of the gateway container on `node` (Status, Error, ...)."""
    container = next(c for c in cluster[node].client.containers.list(all=True) if "-gateway-" in c.name)
    return container.attrs["State"]


def gate_running(service_id: str) -> bool:
    """Whether this test's apply runs the rollout gate of that service now (a shell under this process)."""
    processes = list_processes()

    def ours(pid: int) -> bool:
        for _ in range(20):
            if pid == os.getpid():
                return True
            if pid not in processes:
                return False
            pid = processes[pid].ppid
        return False

    return any("carecircle rollout" in p.cmdline and service_id in p.cmdline and ours(p.pid) for p in processes.values())


def swarm_view(cluster: SwarmCluster, manager: str, service: str) -> str:
    """What `manager` knows of the nodes and of `service`'s tasks, and what the live daemons logged of
    their agents' sessions: the figures a failed scenario needs to be understood."""
    ask = cluster[manager].client.api
    names = {n["ID"]: n["Description"]["Hostname"] for n in ask.nodes()}
    nodes = [f"{n['Description']['Hostname']} {n['Status']['State']} {n['Spec']['Availability']} "
             f"{(n.get('ManagerStatus') or {}).get('Leader', False) and 'leader' or ''}" for n in ask.nodes()]
    listed = sorted(ask.tasks(filters={"service": service}), key=lambda t: (t.get("Slot", 0), t["CreatedAt"]))
    tasks = [f"slot {t.get('Slot')} {t['ID'][:12]} {names.get(t.get('NodeID', ''), '-')} desired {t['DesiredState']} "
             f"{t['Status']['State']} since {t['Status']['Timestamp'][11:22]} created {t['CreatedAt'][11:22]} {t['Status'].get('Err', '')}"
             for t in listed]
    logged = [f"{name}: {line[:240]}" for name in cluster.nodes for line in [
        line for line in cluster[name].log.read_text(errors="replace").splitlines()[-600:]
        if any(word in line for word in ("session", "dispatcher", "leader", "heartbeat", "assignment"))][-15:]]
    return "\n".join(["nodes:", *nodes, "tasks:", *tasks, "logged:", *logged])


def test_1_an_edge_node_drained_restarted_and_restored_serves_again_after_the_next_pulumi_up(swarm, stack):
    """The node-maintenance procedure of docs/scaling.md on an edge node that also runs api replicas."""
    api = stack.service_name("blue")
    node = "node2"
    rebalance_onto(swarm, api, node)
    try:
        with Load(edges(swarm, stack), SERVER_NAME, timeout=10) as load:
            time.sleep(2)
            drained_at = load.elapsed()
            availability(swarm, node, "drain")
            wait_for(f"the pool back to 3 replicas, none on {node}", lambda: (lambda r: len(r) == 3 and all(
                t.node != node for t in r))(running(swarm, api)), timeout=120, interval=1)
            moved_at = load.elapsed()
            restart = swarm.restart_daemon(node)
            swarm.wait_node_state(node, "ready", timeout=90)
            restarted_at = load.elapsed()
            availability(swarm, node, "active")
            # The gateway's restart policy started it once, while the node was drained: Swarm gave it no
            # network attachment and the daemon does not try again (moby#32607, moby#35889).
            time.sleep(20)
            stuck = gateway_state(swarm, node)
            assert stuck["Status"] == "exited", ("the gateway came back by itself after the daemon restart: "
                                                 f"the procedure's `pulumi up` step may be dropped ({stuck})")
            started = time.monotonic()
            result = stack.apply()
            apply_seconds = time.monotonic() - started
            applied_at = load.elapsed()
            assert gateway_state(swarm, node)["Status"] == "running"
            wait_for(f"the balancer to take {node} back", lambda: load.balancer.in_service[node], timeout=30)
            back_at = load.elapsed()
            time.sleep(3)
        # The refresh reads the exited container back without its ports (ForceNew): `pulumi up` replaces it.
        assert "gateway-2-container" in result.replaced and "gateway-1-container" not in result.replaced, result.steps
        assert not load.failed(True), load.failed(True)[:5]
        served_again = [o for o in load.requests(False) + load.requests(True) if o.at > back_at and o.edge == node]
        assert served_again and all(o.ok for o in served_again), served_again[:5]
        # Plain requests fail only through the restarted edge, before the balancer took it out.
        assert all(o.edge == node for o in load.failed(False)), load.failed(False)[:5]
        report("edge node drained, daemon restarted, restored", drain_to_pool_moved_seconds=round(moved_at - drained_at, 1),
               daemon_exited_seconds=round(restart["exited_seconds"], 1), daemon_answering_seconds=round(restart["answering_seconds"], 1),
               node_ready_after_restart_seconds=round(restarted_at - moved_at, 1), gateway_after_activation=stuck["Status"],
               gateway_error=stuck["Error"][:300], pulumi_up_seconds=round(apply_seconds, 1), refresh_found=result.refreshed,
               back_in_the_balancer_after_pulumi_up_started_seconds=round(back_at - (applied_at - apply_seconds), 1),
               balancer=load.balancer_changes(), plain_failed_at=[(round(o.at, 1), o.edge, o.error[:60]) for o in load.failed(False)][:6],
               **load.summary())
    finally:
        availability(swarm, node, "active")


def test_2_an_app_node_cut_off_for_30_s_then_healed(swarm, stack, swarm_resources):
    """node3 (a manager and an app node, no gateway) loses its link for 30 s; its daemon keeps running."""
    api = stack.service_name("blue")
    node = "node3"
    rebalance_onto(swarm, api, node)
    stale = {t.raw["Status"]["ContainerStatus"]["ContainerID"][:12]: t.addresses[stack.network("edge")]
             for t in running(swarm, api) if t.node == node}
    probe = swarm_resources.probe("node1", [stack.network("edge")])
    samples: list[tuple[float, list[str]]] = []
    stop = threading.Event()

    with Load(edges(swarm, stack), SERVER_NAME, timeout=10) as load:
        def sample() -> None:
            while not stop.is_set():
                addresses = probe.resolve(f"tasks.{api}")
                samples.append((load.elapsed(), addresses))
                stop.wait(0.3)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(2)
        cut_at = load.elapsed()
        run(["ip", "link", "set", swarm[node].veth, "down"])
        try:
            wait_for("the pool refilled on the other nodes", lambda: len([t for t in running(swarm, api) if t.node != node]) == 3,
                     timeout=60, interval=1)
            refilled_at = load.elapsed()
            time.sleep(max(0.0, cut_at + 30 - load.elapsed()))
        finally:
            run(["ip", "link", "set", swarm[node].veth, "up"])
        healed_at = load.elapsed()
        # The replaced replica runs on until node3's agent hears from the managers again (its desired
        # state is shutdown since the node went down). What docs/scaling.md has the operator run shows it.
        def listed_running() -> bool:
            listed = swarm["node1"].docker("service", "ps", "--filter", "desired-state=shutdown", "--format",
                                           "{{.Node}} {{.CurrentState}}", api, check=False)
            assert listed.returncode == 0, listed.stderr
            return any(line.startswith(f"{node} Running") for line in listed.stdout.decode().splitlines())

        assert wait_for("the replaced replica listed as running", listed_running, timeout=60, interval=1)
        wait_for("the replaced replica stopped", lambda: not any(
            swarm[node].client.api.inspect_container(cid)["State"]["Running"] for cid in stale), timeout=240, interval=1)
        stopped_at = load.elapsed()
        wait_for("the replaced replica no longer listed as running", lambda: not listed_running(), timeout=60, interval=1)
        live = wait_for("3 live replicas", lambda: (lambda r: r if len(r) == 3 else None)(
            [t for t in running(swarm, api) if t.container_id and t.container_id[:12] not in stale]), timeout=120, interval=1)
        live_addresses = sorted(t.addresses[stack.network("edge")] for t in live)
        wait_for("DNS to hold only the live replicas", lambda: samples and samples[-1][0] > stopped_at
                 and sorted(samples[-1][1]) == live_addresses, timeout=120, interval=0.5)
        converged_at = load.elapsed()
        time.sleep(8)  # past the gateways' resolver validity
        settled_at = load.elapsed()
        time.sleep(4)
        stop.set()
        sampler.join(timeout=10)
    # The returning manager forced an election: wait until the API answers again, for what follows.
    swarm.wait_node_state(node, "ready", timeout=120)
    assert not load.failed(True), load.failed(True)[:5]
    stale_addresses = set(stale.values())
    out_of_dns = next((at for at, a in samples if at > cut_at and not stale_addresses & set(a)), None)
    back_in_dns = [at for at, a in samples if at > healed_at and stale_addresses & set(a)]
    stale_answers = [o for o in load.requests(True) + load.requests(False) if o.ok and o.task in stale and o.at > healed_at]
    live_tasks = {t.container_id[:12] for t in live}
    answered_late = {o.task for o in load.requests(True) + load.requests(False) if o.ok and o.at > settled_at}
    assert answered_late and answered_late <= live_tasks, (answered_late, live_tasks)  # once converged, only live replicas
    report("app node cut off 30 s", out_of_dns_seconds=round(out_of_dns - cut_at, 1) if out_of_dns else None,
           refilled_seconds=round(refilled_at - cut_at, 1),
           stale_back_in_dns_after_heal_seconds=round(back_in_dns[0] - healed_at, 1) if back_in_dns else None,
           stale_in_dns_for_seconds=round(back_in_dns[-1] - back_in_dns[0], 1) if back_in_dns else 0,
           max_addresses_in_dns=max(len(a) for _, a in samples), stale_answers_after_heal=len(stale_answers),
           stale_stopped_after_heal_seconds=round(stopped_at - healed_at, 1), converged_after_heal_seconds=round(converged_at - healed_at, 1),
           **load.summary())


@pytest.mark.parametrize(("lost_role", "memory_mb"), [("leader", 320), ("follower", 352)])
def test_3_a_deploy_whose_manager_is_cut_off_fails_naming_it_and_runs_again_through_another_while_it_is_away(
        swarm, stack, lost_role, memory_mb):
    """docker:host loses its link while a rolling update has a task starting on it; `pulumi up` is run again
    through another manager before it comes back. The leader cut off: an election, whose new leader starts
    the update afresh. A follower cut off: the leader's update waits on the task placed there."""
    api = stack.service_name("blue")
    deploying_through = stack.manager
    leader = swarm.manager().name
    lost = leader if lost_role == "leader" else next(
        n.name for n in sorted(swarm.managers, key=lambda n: n.name in stack.edges) if n.name != leader)
    other = next(n.name for n in swarm.managers if n.name != lost)
    stack.use_manager(lost)
    ask = swarm[other].client.api
    lost_id = swarm[lost].node_id
    # The 193 s stall needs a task of the update placed on the manager that is then lost. With no
    # replica of its own there and the other nodes paused (their tasks run on, no new one lands), the
    # update's first two new tasks can only go there (2 per node at most); the third waits for room.
    availability(swarm, lost, "drain")
    wait_for(f"no replica on {lost}", lambda: (lambda r: len(r) == 3 and all(t.node != lost for t in r))(
        running(swarm, api)), timeout=120, interval=1)
    availability(swarm, lost, "active")
    limit = memory_mb * 1024 * 1024
    errors: list[Exception] = []

    def deploy() -> None:
        try:
            stack.apply(apiMemoryMb=memory_mb)  # a rolling update of the active pool
        except Exception as error:  # the figure: what `pulumi up` says
            errors.append(error)

    def starting_on_lost() -> bool:
        """A task of the update placed on `lost` and not running yet: what Swarm's updater then waits for."""
        return any(t.get("NodeID") == lost_id and t["Status"]["State"] in ("assigned", "accepted", "preparing", "ready", "starting")
                   and t["Spec"]["Resources"]["Limits"]["MemoryBytes"] == limit
                   for t in ask.tasks(filters={"service": api}))

    def others(value: str) -> None:
        for node in swarm.nodes:
            if node != lost:
                wait_for(f"{node} {value}", lambda n=node: swarm[other].docker(
                    "node", "update", "--availability", value, n, check=False).returncode == 0, timeout=60, interval=1)

    with Load(edges(swarm, stack), SERVER_NAME, timeout=10) as load:
        others("pause")
        deploying = threading.Thread(target=deploy, daemon=True)
        started = time.monotonic()
        deploying.start()
        try:
            wait_for("the rolling update under way", lambda: (ask.inspect_service(api).get("UpdateStatus") or {}).get(
                "State") == "updating", timeout=90, interval=0.2)
            wait_for("the rollout gate running", lambda: gate_running(ask.inspect_service(api)["ID"]), timeout=60, interval=0.1)
            wait_for("a task of the update starting on the manager", starting_on_lost, timeout=60, interval=0.2)
            cut_after = time.monotonic() - started
            cut_at = time.time()
            run(["ip", "link", "set", swarm[lost].veth, "down"])
        finally:
            others("active")
        try:
            deploying.join(timeout=300)
            failed_after = time.monotonic() - started
            assert not deploying.is_alive(), "the apply still waits 300 s after its manager was cut off"
            # What the message says to run: pulumi up again through another manager, here while the lost one
            # is still away (the operator waits until `docker node ls` on another manager shows it Down).
            wait_for("the lost manager down, seen from another",
                     lambda: ask.inspect_node(lost_id)["Status"]["State"] == "down", timeout=120, interval=1)
            stack.use_manager(other)
            rerun_started = time.monotonic()
            try:
                stack.apply()
            except Exception as error:
                raise AssertionError(f"the rerun through {other} failed while {lost} was away:\n{swarm_view(swarm, other, api)}") from error
            rerun_seconds = time.monotonic() - rerun_started
            rerun_output = next(live.state.get("stderr", "") for live in stack.applier.ctx.live.values()
                                if live.type == "command:local:Command" and live.name.endswith("-api-blue-rollout"))
            spec = ask.inspect_service(api)["Spec"]["TaskTemplate"]
            away = [t for t in ask.tasks(filters={"service": api, "desired-state": "running"}) if t["Status"]["State"] == "running"]
        finally:
            run(["ip", "link", "set", swarm[lost].veth, "up"])
            stack.use_manager(deploying_through)
        healed_at = time.monotonic()
        wait_for(f"{lost} ready, seen from {other}", lambda: ask.inspect_node(lost_id)["Status"]["State"] == "ready",
                 timeout=120, interval=1)
        ready_after_heal = time.monotonic() - healed_at
        live = {t["Status"]["ContainerStatus"]["ContainerID"][:12] for t in away}
        # What still ran on the lost node (the old release, and the task the update had started there)
        # stops once its agent hears from the managers; from then on only the new release answers.
        wait_for(f"the replaced tasks on {lost} stopped", lambda: not [
            c for c in swarm[lost].client.containers.list(filters={"label": f"com.docker.swarm.service.name={api}"})
            if c.id[:12] not in live], timeout=180, interval=1)
        stopped_after_heal = time.monotonic() - healed_at
        settled_at = load.elapsed() + 8  # past the gateways' resolver validity
        time.sleep(12)
    assert errors, "the apply succeeded although its manager was cut off"
    message = str(errors[0])
    assert f"the manager {swarm[lost].host_url} did not answer" in message, message
    assert "run pulumi up again through another one: pulumi config set docker:host" in message, message
    # The rerun finished while the lost manager was away: the new spec on 3 running replicas, none on that node.
    assert spec["Resources"]["Limits"]["MemoryBytes"] == limit
    assert len(away) == 3 and all(t["NodeID"] != lost_id and t["Spec"]["Resources"]["Limits"]["MemoryBytes"] == limit
                                  for t in away), away
    # What the edges that stayed up logged (an upstream on the lost node timing out, ...).
    logged = {node: dict(gateway_errors(swarm, node, cut_at)) for node in stack.edges if node != lost}
    # A retrying request fails only as nginx fails one whose tries straddle the moment an edge's DNS drops the
    # lost node's replicas: refused (502, "no live upstreams") or ended (504) instead of sent to the new list
    # (tests/test_gateway_upstreams.py proves it on nginx alone; docs/scaling.md, "A node cut off, then back").
    refused = load.failed(True)
    assert all(o.status in (502, 504) for o in refused) and len(refused) <= len(load.requests(True)) / 1000, (refused[:5], logged)
    answered_late = {o.task for o in load.requests(True) + load.requests(False) if o.ok and o.at > settled_at}
    assert answered_late and answered_late <= live, (answered_late, live)
    report(f"{lost_role} manager cut off mid-deploy, rerun while it is away", cut_after_seconds=round(cut_after, 1),
           apply_failed_after_cut_seconds=round(failed_after - cut_after, 1),
           message=message.splitlines()[-2:], rerun_through_another_manager_seconds=round(rerun_seconds, 1),
           update_restarted_by_the_gate="restarting the update on the live nodes" in rerun_output, node_ready_after_heal_seconds=round(ready_after_heal, 1),
           replaced_tasks_stopped_after_heal_seconds=round(stopped_after_heal, 1), gateway_errors=logged, **load.summary())


def test_4_an_edge_node_restarted_without_draining_comes_back_by_itself(swarm, stack):
    """What the maintenance procedure's drain avoids: node2's dockerd restarted while it runs api replicas."""
    api = stack.service_name("blue")
    node = "node2"
    rebalance_onto(swarm, api, node)
    with Load(edges(swarm, stack), SERVER_NAME, timeout=10) as load:
        time.sleep(2)
        restarted_at = load.elapsed()
        restart = swarm.restart_daemon(node)
        swarm.wait_node_state(node, "ready", timeout=90)
        wait_for("the gateway running again", lambda: gateway_state(swarm, node)["Status"] == "running", timeout=60)
        wait_for(f"the balancer to take {node} back", lambda: load.balancer.in_service[node], timeout=60)
        back_at = load.elapsed()
        wait_for("the pool at 3 replicas", lambda: len(running(swarm, api)) == 3, timeout=120, interval=1)
        time.sleep(3)
    shutdown = [line for line in swarm[node].log.read_text(errors="replace").splitlines()
                if "terminated" in line or "shutdown" in line.lower() or "leave" in line.lower()][-12:]
    print("\n".join(shutdown))
    report("edge node restarted without draining", daemon_exited_seconds=round(restart["exited_seconds"], 1),
           daemon_answering_seconds=round(restart["answering_seconds"], 1), edge_back_seconds=round(back_at - restarted_at, 1),
           retrying_failures=[(round(o.at - restarted_at, 2), round(o.took, 1), o.first_error[:90], o.error[:90]) for o in load.failed(True)],
           retrying_first_tries_failed=[(round(o.at - restarted_at, 2), o.first_error[:90]) for o in load.requests(True)
                                        if o.retried and o.at >= restarted_at][:12],
           balancer=load.balancer_changes(), **load.summary())
