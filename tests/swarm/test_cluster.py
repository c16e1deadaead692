"""The swarm harness itself: a real 3-manager Docker Swarm in network namespaces, the stand-in images,
overlay networking between nodes, healthchecks and DNS, host loss, and a teardown that leaves nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from docker.types import ConfigReference, EndpointSpec, Healthcheck, SecretReference, ServiceMode

from .cluster import PREFIX, SwarmCluster, SwarmError, cleanup_stale_sessions, leftovers_of, list_processes, run, wait_for
from .conftest import SWARM_LABELS
from .images import API_VERSIONS, QUEUE_VERSION, REPO, WORKERS_VERSIONS
from .probe import API_HEALTHCHECK, Probe, scale, tasks, wait_running

S = 1_000_000_000  # Docker durations are in nanoseconds
# The stack's api healthcheck, with short intervals so tests do not wait long.
HEALTHCHECK = Healthcheck(test=["CMD", "node", "-e", API_HEALTHCHECK], interval=1 * S, timeout=3 * S, retries=2,
                          start_period=0)
NO_DEPS = ["READY_CHECKS="]  # no postgres/redis/rabbitmq here: /ready checks nothing


def api_service(resources, base: str, network: str, *, image: str = f"{REPO}/api:1", mode=None, **kwargs):
    kwargs.setdefault("env", NO_DEPS)
    kwargs.setdefault("healthcheck", HEALTHCHECK)
    return resources.service(base, image, mode=mode or ServiceMode("global"), networks=[network],
                             endpoint_spec=kwargs.pop("endpoint_spec", EndpointSpec(mode="dnsrr")),
                             hostname="{{.Node.Hostname}}", **kwargs)


def esp_supported(cluster: SwarmCluster) -> bool:
    """Can this kernel hold an IPsec ESP state with the AEAD Docker's encrypted overlay uses?"""
    node = cluster["node1"]
    proc = node.netns_run("ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
                          "spi", "0x4242", "mode", "transport", "aead", "rfc4106(gcm(aes))",
                          "0x" + "11" * 20, "64", check=False)
    node.netns_run("ip", "xfrm", "state", "flush", check=False)
    return proc.returncode == 0


# --------------------------------------------------------------------------------------------------
# the cluster


def test_three_managers_ready_with_labels(swarm: SwarmCluster) -> None:
    seen = swarm.swarm_nodes()
    assert sorted(seen) == ["node1", "node2", "node3"]
    for name, node in seen.items():
        assert node["Status"]["State"] == "ready", name
        assert node["Spec"]["Role"] == "manager", name
        assert node["ManagerStatus"]["Reachability"] == "reachable", name
        assert node["Spec"].get("Labels", {}) == SWARM_LABELS[name], name
        assert node["Status"]["Addr"] == swarm[name].address
    assert sum(bool(n["ManagerStatus"].get("Leader")) for n in seen.values()) == 1
    host_net = os.stat("/proc/self/ns/net").st_ino
    nets = set()
    for i, node in enumerate(swarm.nodes.values(), start=1):
        assert node.address == str(swarm.subnet.network_address + 10 + i)
        assert node.host_url == f"unix://{node.socket}"
        assert list_processes()[node.pid].comm == "dockerd"
        assert node.client.ping()
        nets.add(os.stat(f"/proc/{node.pid}/ns/net").st_ino)
        assert node.client.info()["Name"] == node.name
    assert len(nets) == 3 and host_net not in nets, "each dockerd has a network namespace of its own"


def test_stand_in_images_on_every_node(swarm: SwarmCluster) -> None:
    expected = {f"{REPO}/api:{v}" for v in API_VERSIONS} | {f"{REPO}/workers:{v}" for v in WORKERS_VERSIONS} \
        | {f"{REPO}/queue:{QUEUE_VERSION}"}
    assert expected <= set(swarm.images)
    for node in swarm.nodes.values():
        for tag, image_id in swarm.images.items():
            assert node.client.images.get(tag).id == image_id, f"{tag} on {node.name}"
    env = {tag: dict(e.split("=", 1) for e in swarm["node1"].client.images.get(tag).attrs["Config"]["Env"])
           for tag in expected}
    assert env[f"{REPO}/api:1"]["STANDIN_VERSION"] == "1"
    assert env[f"{REPO}/api:2"]["STANDIN_VERSION"] == "2"
    assert env[f"{REPO}/api:broken"]["STANDIN_BROKEN_HEALTH"] == "1"
    out = swarm["node2"].client.containers.run(f"{REPO}/api:1", ["node", "-e", "console.log(process.version)"],
                                               remove=True)
    assert out.decode().startswith("v")


# --------------------------------------------------------------------------------------------------
# overlay networks, DNS, healthchecks


def test_overlay_spans_nodes_via_tasks_dns(swarm: SwarmCluster, swarm_resources) -> None:
    net = swarm_resources.network("net")
    svc = api_service(swarm_resources, "api", net.name)
    running = wait_running(swarm, svc.name, 3, timeout=60, healthy=True)
    assert sorted(t.node for t in running) == ["node1", "node2", "node3"]
    addresses = {t.addresses[net.name]: t.node for t in running}

    probe = swarm_resources.probe("node1", [net.name])
    assert sorted(probe.resolve(f"tasks.{svc.name}")) == sorted(addresses)
    # dnsrr: the service name itself resolves to the task addresses too (no VIP)
    assert sorted(probe.resolve(svc.name)) == sorted(addresses)
    answers = probe.get_many([f"http://{ip}:3000/" for ip in addresses])
    for answer in answers:
        assert answer.get("status") == 200, answer
        ip = answer["url"].split("/")[2].split(":")[0]
        assert answer["headers"]["x-standin-task"] == addresses[ip]  # the task on that node answered
        assert answer["headers"]["x-standin-version"] == "1"
    assert {a["headers"]["x-standin-task"] for a in answers} == {"node1", "node2", "node3"}


def test_encrypted_overlay_matches_kernel_ipsec_support(swarm: SwarmCluster, swarm_resources) -> None:
    """`--opt encrypted` needs IPsec ESP with rfc4106(gcm(aes)) in the kernel. Where it is missing (this
    VM's kernel: CONFIG_INET_ESP and CONFIG_CRYPTO_GCM unset) the network is created and tasks start,
    but traffic between nodes is silently dropped; only same-node traffic flows."""
    net = swarm_resources.network("enc", options={"encrypted": ""})
    svc = api_service(swarm_resources, "api", net.name)
    running = wait_running(swarm, svc.name, 3, timeout=60, healthy=True)
    probe = swarm_resources.probe("node1", [net.name])
    answers = {t.node: probe.get(f"http://{t.addresses[net.name]}:3000/", timeout_ms=2000) for t in running}
    assert answers["node1"].get("status") == 200, answers["node1"]
    remote_ok = [answers[n].get("status") == 200 for n in ("node2", "node3")]
    if esp_supported(swarm):
        assert all(remote_ok), f"IPsec is available, yet the encrypted overlay does not carry traffic: {answers}"
    else:
        assert not any(remote_ok), f"no ESP in this kernel, yet remote tasks answered: {answers}"


def test_api_healthcheck_and_dns_follow_health(swarm: SwarmCluster, swarm_resources) -> None:
    """The stack's healthcheck (node + fetch /health) passes on api:1 and fails on api:broken; a task is in
    tasks.<service> DNS only while healthy, and leaves it as soon as it turns unhealthy."""
    net = swarm_resources.network("net")
    good = api_service(swarm_resources, "good", net.name, mode=ServiceMode("replicated", 2))
    broken = api_service(swarm_resources, "broken", net.name, image=f"{REPO}/api:broken",
                         mode=ServiceMode("replicated", 1))
    running = wait_running(swarm, good.name, 2, timeout=60, healthy=True)
    for task in running:
        health = swarm[task.node].client.api.inspect_container(task.container_id)["State"]["Health"]
        assert health["Status"] == "healthy"
        assert health["Log"][-1]["ExitCode"] == 0
    # A task with a healthcheck stays "starting" until healthy; Swarm shuts down one that turns unhealthy
    # (the stand-in exits 0 on SIGTERM: state "complete") and starts another.
    def shut_down_unhealthy():
        for t in tasks(swarm, broken.name, desired="shutdown"):
            state = swarm[t.node].client.api.inspect_container(t.container_id)["State"]
            if state["Health"]["Status"] == "unhealthy":
                return t, state["Health"]["Log"]
        return None
    bad, log = wait_for("the broken task to be shut down as unhealthy", shut_down_unhealthy, 40)
    assert bad.state in ("complete", "failed", "shutdown")
    assert log and all(entry["ExitCode"] == 1 for entry in log)
    assert not [t for t in tasks(swarm, broken.name, desired=None) if t.state == "running"], "never healthy"
    again = wait_for("the broken service's next task", lambda: next(
        (t for t in tasks(swarm, broken.name) if t.state == "starting"), None), 30)

    probe = swarm_resources.probe("node3", [net.name])
    assert probe.resolve(f"tasks.{broken.name}") == []  # never healthy, never in DNS
    assert probe.get(f"http://{again.addresses[net.name]}:3000/health")["status"] == 500
    addresses = sorted(t.addresses[net.name] for t in running)
    assert probe.resolve(f"tasks.{good.name}") == addresses

    victim = running[0]
    flip = probe.js(f"fetch('http://{victim.addresses[net.name]}:3000/_standin/health?state=fail',{{method:'POST'}})"
                    ".then(r=>r.json()).then(b=>console.log(b.health))")
    assert flip.strip() == "failing"
    t0 = time.monotonic()
    wait_for("the unhealthy task to leave DNS", lambda: victim.addresses[net.name]
             not in probe.resolve(f"tasks.{good.name}"), 20, interval=0.2)
    swarm.timings["unhealthy_to_out_of_dns"] = time.monotonic() - t0


def test_host_mode_port_keeps_client_address(swarm: SwarmCluster, swarm_resources) -> None:
    """dockerd runs with iptables in each namespace: a host-mode published port is DNAT, so the task
    sees the real client address (here: the host's bridge address)."""
    net = swarm_resources.network("net")
    port = 18080
    svc = api_service(swarm_resources, "edge", net.name, mode=ServiceMode("replicated", 1),
                      constraints=["node.hostname==node1"],
                      endpoint_spec=EndpointSpec(mode="dnsrr", ports={port: (3000, "tcp", "host")}))
    wait_running(swarm, svc.name, 1, timeout=60, healthy=True)

    def get():
        with urllib.request.urlopen(f"http://{swarm['node1'].address}:{port}/", timeout=3) as r:
            return dict(r.headers), json.load(r)
    headers, body = wait_for("the published port to answer", get, 20)
    assert headers["x-standin-client"] == swarm.gateway == body["client"]
    assert body["task"] == "node1"


def test_nginx_image_proxies_to_api(swarm: SwarmCluster, swarm_resources, nginx_image: str) -> None:
    """The nginx stand-in runs the real nginx from bin/fetch-nginx in a swarm task, has the tools the
    gateway apply script uses, and proxies to api tasks found through tasks.<service>."""
    net = swarm_resources.network("net")
    api = api_service(swarm_resources, "api", net.name, mode=ServiceMode("replicated", 2))
    wait_running(swarm, api.name, 2, timeout=60, healthy=True)
    conf = f"""
pid /tmp/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path /tmp/cb; proxy_temp_path /tmp/px; fastcgi_temp_path /tmp/fc;
    uwsgi_temp_path /tmp/uw; scgi_temp_path /tmp/sc;
    upstream api {{ server tasks.{api.name}:3000; }}
    server {{
        listen 8080;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Gateway-Saw $remote_addr always;
        }}
    }}
}}
"""
    config = swarm_resources.config("nginx-conf", conf.encode())
    port = 18081
    gw = swarm_resources.service(
        "gw", nginx_image, command=["nginx", "-c", "/etc/nginx/carecircle/active.conf", "-g", "daemon off;"],
        networks=[net.name], constraints=["node.labels.carecircle.edge==true"], mode=ServiceMode("replicated", 1),
        configs=[ConfigReference(config.id, config.name, filename="/etc/nginx/carecircle/active.conf")],
        endpoint_spec=EndpointSpec(mode="dnsrr", ports={port: (8080, "tcp", "host")}))
    task = wait_running(swarm, gw.name, 1, timeout=60)[0]
    node = swarm[task.node]

    def get():
        with urllib.request.urlopen(f"http://{node.address}:{port}/", timeout=3) as r:
            return dict(r.headers), json.load(r)
    headers, body = wait_for("nginx to proxy to the api", get, 30)
    assert headers["X-Gateway-Saw"] == swarm.gateway  # nginx sees the client through DNAT
    assert body["client"] == task.addresses[net.name]  # the api sees nginx
    assert body["task"] in {t.node for t in tasks(swarm, api.name)}

    container = node.client.containers.get(task.container_id)
    tools = container.exec_run(["sh", "-c", "nginx -v 2>&1 && nginx -t -q -c /etc/nginx/carecircle/active.conf && "
                                "echo aGk= | base64 -d && echo | sed -n p && tar --help >/dev/null 2>&1; "
                                "wget -q -O /dev/null http://127.0.0.1:8080/ && echo wget-ok"])
    out = tools.output.decode()
    assert tools.exit_code == 0, out
    assert nginx_image.rsplit(":", 1)[1] in out and "hi" in out and "wget-ok" in out


# --------------------------------------------------------------------------------------------------
# the stand-ins' contract: secrets from files, pool/task/version/database in every answer, drain


def test_api_secret_files_identity_and_graceful_stop(swarm: SwarmCluster, swarm_resources) -> None:
    net = swarm_resources.network("net")
    db_url = b"postgres://carecircle:s3cret@postgres:5432/carecircle"
    secret = swarm_resources.secret("database-url", db_url)
    svc = api_service(
        swarm_resources, "api", net.name, image=f"{REPO}/api:2", mode=ServiceMode("replicated", 1),
        env=[*NO_DEPS, "DATABASE_URL_FILE=/run/secrets/database_url", "SHUTDOWN_DELAY_SECONDS=2",
             "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=test,carecircle.pool=green"],
        secrets=[SecretReference(secret.id, secret.name, filename="database_url")], stop_grace_period=20 * S)
    task = wait_running(swarm, svc.name, 1, timeout=60, healthy=True)[0]
    probe = swarm_resources.probe("node2", [net.name])
    url = f"http://{task.addresses[net.name]}:3000"
    answer = probe.get(f"{url}/anything")
    assert answer["status"] == 200
    h = answer["headers"]
    assert h["x-standin-pool"] == "green" and h["x-standin-version"] == "2" and h["x-standin-task"] == task.node
    assert h["x-standin-database"] == hashlib.sha256(db_url).hexdigest()[:12]
    assert db_url.decode() not in answer["body"]

    # SIGTERM (the service scaled to 0): a request in flight finishes; the process exits 0.
    result: dict = {}
    slow = threading.Thread(target=lambda: result.update(probe.get(f"{url}/slow?delay_ms=4000", timeout_ms=15000)))
    slow.start()
    time.sleep(0.5)
    scale(swarm, svc.name, 0)
    slow.join(timeout=30)
    assert result.get("status") == 200, result
    wait_for("the task to stop", lambda: all(t.state != "running" for t in tasks(swarm, svc.name, desired=None)), 30)
    container = swarm[task.node].client.containers.get(task.container_id)
    assert container.attrs["State"]["ExitCode"] == 0
    logs = container.logs().decode()
    assert "SIGTERM: serving 2000 ms more" in logs and "all requests finished" in logs


def test_workers_take_jobs_from_queue_and_drain(swarm: SwarmCluster, swarm_resources) -> None:
    net = swarm_resources.network("net")
    queue = swarm_resources.service("queue", f"{REPO}/queue:{QUEUE_VERSION}", networks=[net.name],
                                    endpoint_spec=EndpointSpec(mode="dnsrr"), env=["LEASE_SECONDS=30"])
    wait_running(swarm, queue.name, 1, timeout=60)  # before the workers: they look for it with backoff
    redis_url = swarm_resources.secret("redis-url", f"redis://{queue.name}:6379".encode())
    workers = swarm_resources.service(
        "workers", f"{REPO}/workers:1", networks=[net.name], mode=ServiceMode("replicated", 3),
        env=["REDIS_URL_FILE=/run/secrets/redis_url", "OTEL_RESOURCE_ATTRIBUTES=carecircle.pool=blue"],
        secrets=[SecretReference(redis_url.id, redis_url.name, filename="redis_url")],
        healthcheck=Healthcheck(test=["CMD", "node", "-e", "const s=require('fs').statSync(process.env."
                                      "WORKER_HEARTBEAT_FILE);process.exit(Date.now()-s.mtimeMs<30000?0:1)"],
                                interval=1 * S, timeout=3 * S, retries=2),
        stop_grace_period=20 * S)
    wait_running(swarm, workers.name, 3, timeout=60, healthy=True)
    probe = swarm_resources.probe("node1", [net.name])
    q = f"http://{queue.name}:6379"

    def post(path: str) -> dict:
        return json.loads(probe.js(f"fetch('{q}{path}',{{method:'POST'}}).then(r=>r.json())"
                                   ".then(b=>console.log(JSON.stringify(b)))"))

    def stats() -> dict:
        return json.loads(probe.get(f"{q}/stats")["body"])

    post("/enqueue?count=30&ms=100")
    done = wait_for("30 jobs acked", lambda: (s := stats())["acked"] == 30 and s, 60, interval=0.5)
    assert done["enqueued"] == 30 and done["inFlight"] == 0 and done["redelivered"] == 0
    assert len(done["perWorker"]) == 3 and done["perPool"] == {"blue": 30}

    # Long jobs in hand, then SIGTERM to every worker: each finishes (and acks) its job, takes no more.
    post("/reset")
    post("/enqueue?count=6&ms=8000")
    wait_for("3 jobs in flight", lambda: stats()["inFlight"] == 3, 20, interval=0.2)
    scale(swarm, workers.name, 0)
    wait_for("the workers to stop", lambda: not [t for t in tasks(swarm, workers.name, desired=None)
                                                 if t.state == "running"], 40)
    final = stats()
    assert final["acked"] == 3 and final["inFlight"] == 0 and final["pending"] == 3, final
    assert final["redelivered"] == 0 and final["expired"] == 0


# --------------------------------------------------------------------------------------------------
# host loss and teardown (clusters of their own)


def test_kill_node_goes_down_and_tasks_move(make_swarm) -> None:
    cluster = make_swarm(managers=3, labels=SWARM_LABELS)
    client = cluster.manager().client
    net = client.networks.create("net", driver="overlay", attachable=True)
    svc = client.services.create(cluster.images[f"{REPO}/api:1"], name="api", networks=[net.name], env=NO_DEPS,
                                 mode=ServiceMode("replicated", 3), endpoint_spec=EndpointSpec(mode="dnsrr"),
                                 healthcheck=HEALTHCHECK, hostname="{{.Node.Hostname}}")
    running = wait_running(cluster, svc.name, 3, timeout=60, healthy=True)
    victim = "node2"
    on_victim = [t for t in running if t.node == victim]
    assert on_victim, f"no task on {victim}: {[t.node for t in running]}"
    lost_ip = on_victim[0].addresses[net.name]
    probe = Probe(cluster["node1"], [net.name])
    node = cluster[victim]
    dockerd = node.pid

    t0 = time.monotonic()
    killed = cluster.kill_node(victim)
    cluster.timings["kill"] = time.monotonic() - t0
    assert dockerd in killed
    alive = {pid for pid, p in list_processes().items() if p.state != "Z"}
    assert not killed & alive, "processes of the killed node survive"
    assert not cluster._node_processes(node)
    killed_comms = {list_processes().get(pid) for pid in killed}  # (gone: only their count matters)
    assert len(killed) >= 4, f"dockerd, containerd, a shim and the task's process: {len(killed)} {killed_comms}"
    assert run(["cat", f"/sys/class/net/{node.veth}/operstate"]).stdout.decode().strip() == "down"

    gone_from_dns = wait_for("the lost task to leave DNS", lambda: lost_ip not in probe.resolve(f"tasks.{svc.name}")
                             and time.monotonic() - t0, 60, interval=0.3)
    cluster.timings["kill_to_out_of_dns"] = gone_from_dns
    cluster.wait_node_state(victim, "down", timeout=60)
    cluster.timings["kill_to_down"] = time.monotonic() - t0
    moved = wait_running(cluster, svc.name, 3, timeout=60)
    cluster.timings["kill_to_rescheduled"] = time.monotonic() - t0
    assert victim not in {t.node for t in moved}
    assert cluster.timings["kill_to_down"] < 60

    cluster.timings["restart_to_ready"] = cluster.restart_node(victim, timeout=60)
    assert cluster.node_state(victim) == "ready"
    print(f"\nkill_node timings: { {k: round(v, 1) for k, v in cluster.timings.items()} }")


def test_teardown_leaves_nothing_behind(make_swarm) -> None:
    cluster = make_swarm(managers=1, workers=1, labels={"node2": {"carecircle.edge": "true"}})
    assert [n.role for n in cluster.nodes.values()] == ["manager", "worker"]
    client = cluster.manager().client
    client.services.create(cluster.images[f"{REPO}/api:1"], name="api", env=NO_DEPS, mode=ServiceMode("global"),
                           endpoint_spec=EndpointSpec(mode="dnsrr", ports={18082: (3000, "tcp", "host")}))
    wait_running(cluster, "api", 2, timeout=60)
    before = cluster.leftovers()
    assert before["processes"] and before["netns"] and before["links"] and before["dirs"]
    cluster.kill_node("node2")  # a dead node too: teardown must not depend on dockerd answering
    cluster.stop()

    assert {k: v for k, v in cluster.leftovers().items() if v} == {}
    # and, looked for independently of the recorded state:
    assert not [p for p in list_processes().values() if str(cluster.dir) in p.cmdline and p.state != "Z"]
    # (zombies excepted: killed container processes are re-parented to init, which reaps them a bit later)
    assert not [p for p in list_processes().values()
                if p.state != "Z" and any(n.cgroup_parent in p.cgroup for n in cluster.nodes.values())]
    netns = run(["ip", "netns", "list"]).stdout.decode()
    assert f"{PREFIX}{cluster.sid}" not in netns
    links = run(["ip", "-o", "link", "show"]).stdout.decode()
    assert cluster.short not in links
    with open("/proc/self/mountinfo") as f:
        assert cluster.sid not in f.read()
    assert cluster.sid not in run(["iptables", "-w", "10", "-S", "FORWARD"]).stdout.decode()
    assert not cluster.dir.exists()


def test_failed_start_tears_down_what_it_made(monkeypatch) -> None:
    def broken(self):
        raise SwarmError("injected failure after the daemons started")
    monkeypatch.setattr(SwarmCluster, "_form_swarm", broken)
    cluster = SwarmCluster(managers=2)
    try:
        with pytest.raises(SwarmError, match="injected"):
            cluster.start()
        assert cluster.state["netns"] and cluster.state["pids"], "it got as far as starting daemons"
        assert {k: v for k, v in cluster.leftovers().items() if v} == {}
    finally:
        cluster.stop()


def test_session_of_a_killed_pytest_is_cleaned_by_the_next(tmp_path) -> None:
    """A pytest killed outright (SIGKILL: no finalizer, no atexit) leaves its dockerd running; the next
    session's cleanup_stale_sessions() removes all of it, and only it."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from swarm.cluster import SwarmCluster\n"
        "c = SwarmCluster(managers=1).start()\n"
        "print(c.dir, flush=True)\n"
        "time.sleep(300)\n")
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        session_dir = owner.stdout.readline().strip()
        assert session_dir.startswith(f"/tmp/{PREFIX}"), session_dir
        state = json.loads(Path(session_dir, "state.json").read_text())
    finally:
        owner.kill()
        owner.wait(timeout=10)
    orphans = leftovers_of(state)
    assert orphans["processes"] and orphans["netns"], "the killed owner's dockerd and netns are still there"
    assert session_dir in cleanup_stale_sessions()
    assert {k: v for k, v in leftovers_of(state).items() if v} == {}
