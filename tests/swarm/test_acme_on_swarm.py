"""gatewayTls acme on the real swarm (both edges): a staging stack deployed with host-path
certificates switches to ACME (Debian's pebble on the host, validating through a balancer that sends
each of its connections to the next edge node), then renews under load without a failed request.

The figures are printed (-s) and kept in docs/certificates.md:
    .venv/bin/python -m pytest tests/swarm/test_acme_on_swarm.py -s
"""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest

from acme_harness import account_key, balancer, pebble, trusting
from dns_stub import dns_stub

from .acme import apply_with_certificate
from .cluster import SwarmCluster
from .load import Load
from .stack import SERVER_NAME, DeployedStack, base_config, secrets

ACME = {"gatewayTls": "acme", "gatewayAcmeEmail": "ops@carecircle.example", "gatewayTlsCertificatePath": None,
        "gatewayTlsKeyPath": None}


@pytest.fixture(scope="module")
def site(swarm: SwarmCluster, nginx_image: str, registry, tmp_path_factory):
    directory = tmp_path_factory.mktemp("acme")
    config = base_config(directory / "tls", client_cidr=f"{swarm.gateway}/32", images=registry.pinned)
    config["carecircle:gatewayImage"] = nginx_image
    edges = ("node1", "node2")
    stack = DeployedStack(swarm, config, {**secrets(registry.server.registry_auth()),
                                          "carecircle:gatewayAcmeAccountKey": account_key(directory)})
    stack.images = registry.pinned
    # The CA reaches port 80 of the name: here a balancer on the host in front of both edge nodes
    # (this stack takes no PROXY protocol: gatewayLoadBalancers is empty in staging).
    with dns_stub() as dns, balancer([80, 80], hosts=[swarm[n].address for n in edges], proxy_protocol=False) as http, \
            pebble(directory / "pebble", dns, http.port) as ca, trusting(ca.listener_ca):
        dns.records[SERVER_NAME] = ["127.0.0.1"]
        try:
            started = time.monotonic()
            stack.apply()
            yield stack, http, ca, time.monotonic() - started
        finally:
            stack.destroy()


def served(cluster: SwarmCluster, node: str, roots: str) -> bytes:
    """The certificate an edge node serves for the name, verified against the CA's root."""
    context = ssl.create_default_context(cadata=roots)
    with socket.create_connection((cluster[node].address, 443), timeout=5) as sock, context.wrap_socket(sock, server_hostname=SERVER_NAME) as tls:
        return tls.getpeercert(binary_form=True)


def test_acme_switch_then_renewal_under_load_on_both_edges(swarm, site):
    stack, http, ca, deploy_seconds = site
    roots = ca.issuing_roots()
    started = time.monotonic()
    first = apply_with_certificate(stack, **ACME, gatewayAcmeDirectory=ca.directory_url)
    switch_seconds = time.monotonic() - started
    assert first is not None and set(http.connections) == {0, 1}, http.connections  # the CA reached both edges
    first_served = {node: served(swarm, node, roots) for node in stack.edges}
    assert len(set(first_served.values())) == 1
    # Nothing due: nothing ordered.
    assert apply_with_certificate(stack) is None
    gateways = {c.name: c.id for node in stack.edges for c in swarm[node].client.containers.list() if "-gateway-" in c.name}
    # Nothing for the renewal's order to reuse: its challenges are answered (the assertion on `http` below).
    assert ca.forget_authorizations(stack.stack_secrets["carecircle:gatewayAcmeAccountKey"]) >= 1
    http.connections.clear()
    edges = {node: swarm[node].address for node in stack.edges}
    with Load(edges, SERVER_NAME) as load:
        time.sleep(2)
        started = time.monotonic()
        second = apply_with_certificate(stack, gatewayAcmeRenewalMarginDays=3650)
        renew_seconds = time.monotonic() - started
        time.sleep(2)
    assert second is not None and second["certificate"] != first["certificate"]
    assert {node: served(swarm, node, roots) for node in stack.edges} != first_served
    assert len({served(swarm, node, roots) for node in stack.edges}) == 1
    assert set(http.connections) == {0, 1}
    # Renewed in place: the same gateway containers, reloaded.
    assert {c.name: c.id for node in stack.edges for c in swarm[node].client.containers.list() if "-gateway-" in c.name} == gateways
    # As for every reload (scenario 2's switch): clients that retry a keep-alive connection found closed
    # once, as browsers do, lose nothing; a client that never retries may see that closed connection
    # (nginx closes idle keep-alive connections of old workers), never an error answer.
    assert not load.failed(True), load.failed(True)[:5]
    stale = [o for o in load.failed(False) if o.status == 0 and o.error.startswith("RemoteDisconnected")]
    assert stale == load.failed(False), load.failed(False)[:5]
    print("\n[acme on swarm] " + json.dumps({"deploy_seconds": round(deploy_seconds, 1), "switch_to_acme_seconds": round(switch_seconds, 1),
                                               "renewal_seconds": round(renew_seconds, 1), "non_retrying_closed_idle_connections": len(stale),
                                               **load.summary()}, sort_keys=True))
