"""A slow api replica on the real swarm harness (tests/swarm): what the gateways do when one replica of the
active pool answers late, with the stack's gateway settings and with a read timeout shorter than the delay.

Starts a 3-manager swarm (root; bin/swarm-prereqs), deploys the staging stack as tests/swarm does (3 api
replicas, 2 edge gateways), makes the replica on node3 answer every request `--delays` ms late (the
stand-in's POST /_standin/slow) and runs closed-loop clients through both gateways (the swarm tests' load
and balancer model; `--pause` seconds between a client's requests, none by default) for `--seconds` each. Prints per phase: requests/s, p50
and p99 latency of the answered requests, the share answered by the slow replica, and failures. Tears
everything down, also on Ctrl-C.

    .venv/bin/python bench/slow_replica.py [--delays 0,300,1500] [--seconds 20] [--clients 4] [--pause 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra"), str(ROOT / "tests")]

from swarm.cluster import SwarmCluster  # noqa: E402
from swarm.conftest import SWARM_LABELS, start_registry  # noqa: E402
from swarm.images import API_VERSIONS, REPO, WORKERS_VERSIONS, build_nginx_image, build_standin_images  # noqa: E402
from swarm.load import Load  # noqa: E402
from swarm.probe import Probe  # noqa: E402
from swarm.scenario import edges, rebalance_onto, running  # noqa: E402
from swarm.stack import SERVER_NAME, DeployedStack, base_config, secrets  # noqa: E402

SLOW_NODE = "node3"  # an app node without a gateway
# A read timeout below the slow replica's delay: nginx answers 504 after it, counts a failure, and after
# gatewayUpstreamMaxFails of them sends nothing to that replica for gatewayUpstreamFailTimeout. The retry
# window must stay shorter than the read timeout, and every try's connect must fit in it (settings rules).
SHORT_READ_TIMEOUT = {"gatewayProxyReadTimeout": "1s", "gatewayProxyNextUpstreamTimeout": "900ms",
                      "gatewayProxyConnectTimeout": "300ms"}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def phase(cluster: SwarmCluster, deployed: DeployedStack, probe: Probe, slow: tuple[str, str], delay_ms: int,
          seconds: float, clients: int, pause: float, label: str) -> dict:
    task, address = slow
    probe.js(f"fetch('http://{address}:3000/_standin/slow?ms={delay_ms}',{{method:'POST'}})"
             ".then(r=>process.exit(r.ok?0:1),()=>process.exit(1))")
    with Load(edges(cluster, deployed), SERVER_NAME, clients=clients, pause=pause, timeout=10) as load:
        time.sleep(seconds)
    done = load.requests(True) + load.requests(False)
    answered = [o for o in done if o.ok]
    took = [o.took for o in answered]
    return {"phase": label, "slow_ms": delay_ms, "requests_per_second": round(len(done) / load.elapsed(), 1),
            "p50_ms": round(percentile(took, 0.5) * 1000), "p99_ms": round(percentile(took, 0.99) * 1000),
            "slow_replica_share": round(sum(o.task == task for o in answered) / max(1, len(answered)), 2),
            "retrying_failed": len(load.failed(True)), "plain_failed": len(load.failed(False)),
            "plain_statuses": dict(load.summary()["plain_statuses"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delays", default="0,300,1500", help="ms the slow replica adds, one phase each")
    parser.add_argument("--seconds", type=float, default=20.0, help="load per phase")
    parser.add_argument("--clients", type=int, default=4, help="clients of each kind (retrying, plain)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds a client waits between two requests")
    args = parser.parse_args()
    delays = [int(d) for d in args.delays.split(",")]
    with tempfile.TemporaryDirectory() as tmp, SwarmCluster(managers=3, labels=SWARM_LABELS) as cluster:
        cluster.images = build_standin_images(cluster)
        nginx = next(tag for tag in build_nginx_image(cluster) if not tag.endswith(":current"))
        served = start_registry(cluster, [f"{REPO}/api:{v}" for v in API_VERSIONS] + [f"{REPO}/workers:{v}" for v in WORKERS_VERSIONS])
        try:
            config = base_config(Path(tmp) / "tls", client_cidr=f"{cluster.gateway}/32", images=served.pinned)
            config["carecircle:gatewayImage"] = nginx
            deployed = DeployedStack(cluster, config, secrets(served.server.registry_auth()))
            deployed.images = served.pinned
            probe = None
            try:
                deployed.apply()
                api = deployed.service_name("blue")
                rebalance_onto(cluster, api, SLOW_NODE)
                replica = next(t for t in running(cluster, api) if t.node == SLOW_NODE)
                slow = (replica.container_id[:12], replica.addresses[deployed.network("edge")])
                probe = Probe(cluster["node1"], [deployed.network("edge")])
                for delay in delays:
                    print(json.dumps(phase(cluster, deployed, probe, slow, delay, args.seconds, args.clients, args.pause, "stack defaults")), flush=True)
                deployed.apply(**SHORT_READ_TIMEOUT)
                for delay in [d for d in delays if d > 1000]:
                    print(json.dumps(phase(cluster, deployed, probe, slow, delay, args.seconds, args.clients, args.pause,
                                           "read timeout 1s: " + json.dumps(SHORT_READ_TIMEOUT))), flush=True)
            finally:
                if probe is not None:
                    probe.remove()
                deployed.destroy()
        finally:
            served.server.stop()


if __name__ == "__main__":
    main()
