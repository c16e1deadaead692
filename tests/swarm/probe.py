"""Looking into a running swarm: tasks of a service, and a probe container on a node that resolves names
and sends HTTP requests from inside an overlay network (the host cannot reach overlay addresses).

Every call is bounded."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import docker

from .cluster import SwarmCluster, SwarmError, SwarmNode, wait_for

# Node's fetch, as the stack's api healthcheck runs it.
API_HEALTHCHECK = "fetch('http://127.0.0.1:3000/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"


@dataclass
class Task:
    id: str
    service: str
    node: str  # hostname of the node (node1, ...)
    state: str
    desired: str
    container_id: str | None
    addresses: dict[str, str]  # network name -> IPv4 address
    slot: int | None
    raw: dict[str, Any]


def tasks(cluster: SwarmCluster, service: str, *, desired: str | None = "running") -> list[Task]:
    """The service's tasks as a live manager sees them (desired: only tasks with that desired state)."""
    client = cluster.manager().client
    by_id = {n["ID"]: n["Description"]["Hostname"] for n in client.api.nodes()}
    nets = {n["Id"]: n["Name"] for n in client.api.networks()}
    filters = {"service": service}
    if desired:
        filters["desired-state"] = desired
    found = []
    for t in client.api.tasks(filters=filters):
        addrs = {}
        for att in t.get("NetworksAttachments", []) or []:
            name = nets.get(att["Network"]["ID"], att["Network"].get("Spec", {}).get("Name", "?"))
            if att.get("Addresses"):
                addrs[name] = att["Addresses"][0].split("/")[0]
        found.append(Task(t["ID"], service, by_id.get(t.get("NodeID"), t.get("NodeID", "")), t["Status"]["State"],
                          t["DesiredState"], (t["Status"].get("ContainerStatus") or {}).get("ContainerID"),
                          addrs, t.get("Slot"), t))
    return found


def wait_running(cluster: SwarmCluster, service: str, count: int, timeout: float = 60,
                 healthy: bool = False) -> list[Task]:
    """Wait until exactly `count` tasks of the service run (and, with healthy, their containers are
    healthy); returns them."""
    def check() -> list[Task] | None:
        running = [t for t in tasks(cluster, service) if t.state == "running"]
        if len(running) != count:
            return None
        if healthy and not all(container_health(cluster, t) == "healthy" for t in running):
            return None
        return running
    return wait_for(f"{count} {'healthy ' if healthy else ''}running task(s) of {service}", check, timeout, 0.5)


def container_health(cluster: SwarmCluster, task: Task) -> str | None:
    """healthy / unhealthy / starting (None: no healthcheck, or the node is gone)."""
    node = cluster.nodes.get(task.node)
    if node is None or not node.alive or not task.container_id:
        return None
    state = node.client.api.inspect_container(task.container_id)["State"]
    return (state.get("Health") or {}).get("Status")


class Probe:
    """A long-running container on one node, attached to overlay networks, to run Node.js snippets in.

    resolve(name) answers what Docker's embedded DNS (127.0.0.11) says from there; get(url) fetches."""

    def __init__(self, node: SwarmNode, networks: list[str], image: str = "carecircle-standin/api:1") -> None:
        self.node = node
        self.name = f"probe-{node.name}-{secrets.token_hex(3)}"
        self.container = node.client.containers.run(
            image, ["node", "-e", "setInterval(()=>{}, 1<<30)"], name=self.name, detach=True,
            network=networks[0], labels={"carecircle.test": "probe"}, user="1000:1000")
        for net in networks[1:]:
            node.client.networks.get(net).connect(self.container)

    def js(self, script: str, timeout: float = 20) -> str:
        """Run `node -e script` in the probe; return stdout (raise on a non-zero exit)."""
        wrapped = (f"const timer=setTimeout(()=>{{console.error('probe timeout');process.exit(124)}},{int(timeout * 1000)});"
                   f"timer.unref();{script}")
        res = self.node.client.api.exec_create(self.container.id, ["node", "-e", wrapped], stdout=True, stderr=True)
        out = self.node.client.api.exec_start(res["Id"], demux=True)
        code = self.node.client.api.exec_inspect(res["Id"])["ExitCode"]
        stdout = (out[0] or b"").decode(errors="replace")
        if code != 0:
            raise SwarmError(f"probe on {self.node.name} exited {code}: {(out[1] or b'').decode(errors='replace')}{stdout}")
        return stdout

    def resolve(self, name: str) -> list[str]:
        """IPv4 addresses of `name` (empty when it does not resolve)."""
        out = self.js("const r=new (require('dns').promises.Resolver)({timeout:2000,tries:1});"
                      f"r.resolve4({json.dumps(name)})"
                      ".then(a=>console.log(JSON.stringify(a.sort())),e=>console.log('[]')).then(()=>process.exit(0))")
        return json.loads(out.strip() or "[]")

    def get(self, url: str, timeout_ms: int = 3000) -> dict[str, Any]:
        """GET url: {"status", "headers", "body"} or {"error"}."""
        script = (f"fetch({json.dumps(url)},{{signal:AbortSignal.timeout({timeout_ms})}})"
                  ".then(async r=>console.log(JSON.stringify({status:r.status,headers:Object.fromEntries(r.headers),"
                  "body:await r.text()})),e=>console.log(JSON.stringify({error:String(e.cause||e)})))"
                  ".then(()=>process.exit(0))")  # an aborted connect would keep node alive until it times out
        return json.loads(self.js(script, timeout=timeout_ms / 1000 + 10))

    def post_many(self, urls: list[str], timeout_ms: int = 3000) -> list[dict[str, Any]]:
        """POST (empty body) to every url concurrently in one node process: {"url", "status"} or {"url", "error"}."""
        script = (f"Promise.all({json.dumps(urls)}.map(u=>fetch(u,{{method:'POST',signal:AbortSignal.timeout({timeout_ms})}})"
                  ".then(r=>({url:u,status:r.status}),e=>({url:u,error:String(e.cause||e)}))))"
                  ".then(a=>{console.log(JSON.stringify(a));process.exit(0)})")
        return json.loads(self.js(script, timeout=timeout_ms / 1000 + 10))

    def get_many(self, urls: list[str], timeout_ms: int = 3000) -> list[dict[str, Any]]:
        """GET every url concurrently in one node process."""
        script = (f"Promise.all({json.dumps(urls)}.map(u=>fetch(u,{{signal:AbortSignal.timeout({timeout_ms})}})"
                  ".then(async r=>({url:u,status:r.status,headers:Object.fromEntries(r.headers),body:await r.text()}),"
                  "e=>({url:u,error:String(e.cause||e)})))).then(a=>{console.log(JSON.stringify(a));process.exit(0)})")
        return json.loads(self.js(script, timeout=timeout_ms / 1000 + 10))

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.container.remove(force=True)


class Resources:
    """Services, networks, secrets and configs a test creates on a cluster, removed at the end (bounded)."""

    def __init__(self, cluster: SwarmCluster, prefix: str) -> None:
        self.cluster = cluster
        self.prefix = prefix
        self.services: list[str] = []
        self.networks: list[str] = []
        self.secrets: list[str] = []
        self.configs: list[str] = []
        self.probes: list[Probe] = []

    def name(self, base: str) -> str:
        return f"{self.prefix}-{base}"

    def network(self, base: str, **kwargs: Any):
        kwargs.setdefault("driver", "overlay")
        kwargs.setdefault("attachable", True)
        net = self.cluster.manager().client.networks.create(self.name(base), **kwargs)
        self.networks.append(net.name)
        return net

    def service(self, base: str, image: str, **kwargs: Any):
        """A service of a stand-in image, by its id: the executor never tries to pull it."""
        svc = self.cluster.manager().client.services.create(self.cluster.images.get(image, image), name=self.name(base), **kwargs)
        self.services.append(svc.name)
        return svc

    def secret(self, base: str, data: bytes, **kwargs: Any):
        s = self.cluster.manager().client.secrets.create(name=self.name(base), data=data, **kwargs)
        self.secrets.append(self.name(base))
        return s

    def config(self, base: str, data: bytes, **kwargs: Any):
        c = self.cluster.manager().client.configs.create(name=self.name(base), data=data, **kwargs)
        self.configs.append(self.name(base))
        return c

    def probe(self, node: str, networks: list[str], image: str = "carecircle-standin/api:1") -> Probe:
        p = Probe(self.cluster[node], networks, image)
        self.probes.append(p)
        return p

    def cleanup(self, timeout: float = 60) -> None:
        for p in self.probes:
            p.remove()
        try:
            client = self.cluster.manager().client
        except SwarmError:
            return
        for name in self.services:
            with contextlib.suppress(Exception):
                client.services.get(name).remove()
        deadline = time.monotonic() + timeout
        # networks can go once no task container of the services is attached any more
        for kind, names in (("network", self.networks), ("secret", self.secrets), ("config", self.configs)):
            for name in names:
                while True:
                    try:
                        getattr(client, kind + "s").get(name).remove()
                        break
                    except docker.errors.NotFound:
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.5)


def scale(cluster: SwarmCluster, service: str, replicas: int) -> None:
    """Set a replicated service's replica count and change nothing else.

    Not docker-py's Service.scale()/update(): they send back a spec with the server's defaults filled in
    (DNSConfig, StopGracePeriod, RestartPolicy, UpdateConfig...), which Swarm sees as a new task spec
    and answers with a rolling restart of every task. The CLI sends the current spec unchanged."""
    cluster.manager().docker("service", "scale", "--detach", f"{service}={replicas}", timeout=60)
