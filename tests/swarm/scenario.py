"""What the swarm stack scenarios share: a deployed stack per module, the edges the load goes through,
the running tasks of a service, a gateway's error log, and the figures each scenario prints (-s) for
docs/scaling.md."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

from .cluster import SwarmCluster, wait_for
from .load import Load
from .probe import tasks
from .stack import DeployedStack, base_config, secrets

FIGURES: dict[str, dict] = {}


def report(scenario: str, **figures) -> None:
    FIGURES[scenario] = figures
    print(f"\n[{scenario}] " + json.dumps(figures, sort_keys=True))


def deployed_stack(swarm: SwarmCluster, nginx_image: str, registry, tls_dir: Path) -> Iterator[DeployedStack]:
    """The staging stack on `swarm` (the body of a module's `stack` fixture), destroyed at the end."""
    config = base_config(tls_dir, client_cidr=f"{swarm.gateway}/32", images=registry.pinned)
    config["carecircle:gatewayImage"] = nginx_image
    deployed = DeployedStack(swarm, config, secrets(registry.server.registry_auth()))
    deployed.images = registry.pinned
    try:
        yield deployed
    finally:
        deployed.destroy()


def edges(cluster: SwarmCluster, deployed: DeployedStack) -> dict[str, str]:
    return {node: cluster[node].address for node in deployed.edges}


def gateway_errors(cluster: SwarmCluster, node: str, since: float) -> Counter:
    """What the gateway on `node` wrote to its error log since `since` (epoch seconds), by message
    (the text between nginx's connection number and `, client:`)."""
    container = next(c for c in cluster[node].client.containers.list() if "-gateway-" in c.name)
    lines = container.logs(stdout=False, stderr=True, since=int(since)).decode(errors="replace").splitlines()
    return Counter(re.sub(r"^.*?\*\d+ |, client: .*$", "", line) for line in lines if "[error]" in line or "[warn]" in line)


def availability(cluster: SwarmCluster, node: str, value: str) -> None:
    """`docker node update --availability value node`, asked of a manager that is not that node."""
    cluster["node1" if node != "node1" else "node2"].docker("node", "update", "--availability", value, node)


def running(cluster: SwarmCluster, service: str) -> list:
    return [t for t in tasks(cluster, service) if t.state == "running"]


def responses_after(load: Load, after: float) -> set[tuple[str, str]]:
    return set(load.versions(after))


def rebalance_onto(cluster: SwarmCluster, service: str, node: str) -> None:
    """Make sure `service` runs a replica on `node`. Rolling updates can leave a node without one
    (start-first places the new replica before the old one leaves); a forced rolling restart, as an
    operator rebalances, places each new replica on the node with the fewest."""
    if any(t.node == node for t in running(cluster, service)):
        return
    # The whole current spec, only ForceUpdate raised (the SDK's force_update() rebuilds the container
    # spec from the image alone, dropping env, secrets and healthcheck).
    api = cluster.manager().client.api
    current = api.inspect_service(service)
    spec = current["Spec"]
    spec["TaskTemplate"]["ForceUpdate"] = int(spec["TaskTemplate"].get("ForceUpdate", 0)) + 1
    api._raise_for_status(api._post_json(api._url("/services/{0}/update", current["ID"]), data=spec,
                                         params={"version": current["Version"]["Index"]}))
    wait_for(f"a replica of {service} on {node} after a forced rolling restart", lambda: any(
        t.node == node for t in running(cluster, service)) and cluster.manager().client.api.inspect_service(service).get(
        "UpdateStatus", {}).get("State") == "completed", timeout=120, interval=1)
