"""convergeConfig: how the provider waits for a service (resourceDockerService{Create,Update}RefreshFunc and
replicatedConsoleLogUpdater in resource_docker_service_funcs.go): every replica running, an update
completed; a rollback or a pause fails the wait."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any, Optional

import docker.errors
import requests

from ..client import Context
from ..errors import ConvergeError
from ..records import Live
from ..values import parse_duration


def converge(ctx: Context, live: Live, settings: dict, since: Optional[float]) -> None:
    """resourceDockerService{Create,Update}RefreshFunc: poll until every replica runs (the engine
    reports a task with a healthcheck as running only once healthy; the applier also checks the
    health of each task container it can reach)."""
    timeout = settings.get("timeout", parse_duration("3m")) / 1e9
    delay = settings.get("delay", parse_duration("7s")) / 1e9
    deadline = time.monotonic() + timeout
    time.sleep(min(delay, timeout))
    rollback = False
    grace_until = time.monotonic() + ctx.update_status_grace
    last = ""
    while True:
        service = ctx.call(live, "GET", "/services/{0}", live.id or "", what="inspect service")
        status = service.get("UpdateStatus") or {}
        fresh = since is None or _docker_time(status.get("StartedAt", "")) >= since - 1.0
        if since is not None and not fresh and time.monotonic() < grace_until:
            state = "waiting"  # the engine has not picked the update up yet
        else:
            state = status.get("State", "") if since is not None else ""
        if state == "completed":
            return
        if state == "rollback_started":
            rollback = True
        elif state == "rollback_completed":
            raise ConvergeError(f"{live.name}: service rollback completed: {status.get('Message', '')}")
        elif state == "paused":
            raise ConvergeError(f"{live.name}: service update paused: {status.get('Message', '')}")
        elif state == "rollback_paused":
            raise ConvergeError(f"{live.name}: service rollback paused: {status.get('Message', '')}")
        if state != "waiting":
            converged, last = _replicas_running(ctx, live, service)
            if converged:
                if rollback:
                    raise ConvergeError(f"{live.name}: service rollback completed: {status.get('Message', '')}")
                return
        if time.monotonic() > deadline:
            raise ConvergeError(f"{live.name}: service {live.id} did not converge after {timeout:g}s "
                                f"({last}){_failed_task_report(ctx, live)}")
        time.sleep(ctx.poll_interval)




_TASK_ORDER = {s: i for i, s in enumerate(["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready",
                                            "starting", "running", "complete", "shutdown", "failed", "rejected"], start=1)}


def _replicas_running(ctx: Context, live: Live, service: dict) -> tuple[bool, str]:
    replicated = (service["Spec"].get("Mode") or {}).get("Replicated")
    if not replicated or replicated.get("Replicas") is None:
        raise ConvergeError(f"{live.name}: no replica count (the provider converges replicated services only)")
    replicas = replicated["Replicas"]
    api = ctx.client(ctx.engine_of(live)).api
    tasks = api.tasks(filters={"service": live.id, "desired-state": "running"})
    active = {n["ID"] for n in api.nodes() if (n.get("Status") or {}).get("State") != "down"}
    order = _TASK_ORDER
    by_slot: dict[Any, dict] = {}
    for task in tasks:  # replicatedConsoleLogUpdater.tasksBySlot
        desired, observed = task.get("DesiredState", ""), (task.get("Status") or {}).get("State", "")
        if not order.get(desired) or not order.get(observed):
            continue
        slot = task.get("Slot")
        existing = by_slot.get(slot)
        if existing is not None:
            e_desired, e_observed = existing.get("DesiredState", ""), existing["Status"].get("State", "")
            if order[e_desired] < order[desired]:
                continue
            if order[e_desired] == order[desired] and order[e_observed] <= order[observed]:
                continue
        if task.get("NodeID") and task["NodeID"] not in active:
            continue
        by_slot[slot] = task
    running = 0
    unhealthy = []
    for task in by_slot.values():
        if order[task["DesiredState"]] > order["running"] or task["Status"].get("State") != "running":
            continue
        health = _task_health(ctx, live, task)
        if health not in (None, "healthy"):
            unhealthy.append(health)
            continue
        running += 1
    note = f"{running}/{replicas} running" + (f", not healthy: {unhealthy}" if unhealthy else "")
    return running == replicas, note


def _task_health(ctx: Context, live: Live, task: dict) -> Optional[str]:
    cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
    if not cid:
        return None
    # The task's container is on one of the engines; a lost node's engine does not answer.
    for host in sorted({ctx.engine_of(live), *ctx.hosts_connected()}, key=str):
        try:
            state = ctx.client(host).api.inspect_container(cid).get("State") or {}
        except (docker.errors.APIError, requests.exceptions.ConnectionError):
            continue
        return (state.get("Health") or {}).get("Status")
    return None


def _failed_task_report(ctx: Context, live: Live) -> str:
    try:
        tasks = ctx.client(ctx.engine_of(live)).api.tasks(filters={"service": live.id})
    except docker.errors.APIError:
        return ""
    errors = sorted({f"{t['Status'].get('State')}: {t['Status'].get('Err') or t['Status'].get('Message')}"
                     for t in tasks if t["Status"].get("State") in ("failed", "rejected", "shutdown")})
    return ("; tasks: " + "; ".join(errors[-5:])) if errors else ""


def _docker_time(text: str) -> float:
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text or "")
    if not match:
        return 0.0
    stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    fraction = float("0" + match.group(2)) if match.group(2) else 0.0
    zone = match.group(3)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        stamp -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return stamp + fraction
