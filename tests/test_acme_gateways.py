"""gatewayTls acme on real components: Debian's pebble as the CA, two edge gateways on nginx 1.30
behind a PROXY-protocol balancer, the stack's own challenge script, apply script and provider code.

The figures (issuance and renewal times, load counts) are printed with -s:
    .venv/bin/python -m pytest tests/test_acme_gateways.py -s
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import pytest
from cryptography import x509

from acme_harness import EMAIL, SERVER_NAME, AcmeSite, acme_site, trusting, wait_until
from carecircle.acme import AcmeCertificateProvider, AcmeError, GatewayShell, obtain
from nginx_harness import stub_upstreams


def leaf_der(chain: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(chain.encode()).public_bytes(Encoding.DER)


def props(site: AcmeSite, margin_days: int = 30) -> dict:
    """The certificate resource's inputs as the program declares them, with this site's gateways."""
    return {"directory": site.ca.directory_url, "names": [SERVER_NAME], "email": "ops@carecircle.example",
            "account_key": site.account_key, "renewal_margin_days": margin_days,
            "gateways": [{"command": list(g.shell.command), "environment": {}, "challenge_responder": g.shell.responder}
                         for g in site.gateways]}


def verified_handshake(site: AcmeSite, edge: int) -> bytes:
    """A client that trusts only the CA's root, checking the host name, through the balancer to `edge`."""
    site.https.only = edge
    context = ssl.create_default_context(cadata=site.ca.issuing_roots())
    try:
        with socket.create_connection(("127.0.0.1", site.https.port), timeout=5) as sock, \
                context.wrap_socket(sock, server_hostname=SERVER_NAME) as tls:
            return tls.getpeercert(binary_form=True)
    finally:
        site.https.only = None


@pytest.fixture
def site(tmp_path):
    with acme_site(tmp_path) as running, stub_upstreams(2) as upstreams, trusting(running.ca.listener_ca):
        running.upstreams = list(upstreams)
        yield running


def test_a_new_stack_gets_its_certificate_through_both_bootstrap_gateways_and_serves_it(site):
    # New containers: the bootstrap answers nothing but health.
    assert all("carecircle-config-id" not in open(g.paths.active_conf).read() for g in site.gateways)
    started = time.monotonic()
    outputs = AcmeCertificateProvider().create(props(site)).outs  # what `pulumi up` creates
    issue_seconds = time.monotonic() - started
    # The CA's validation went through the balancer to both edges, and each answered.
    assert set(site.http.connections) == {0, 1}, site.http.connections
    assert all(g.tokens() == [] for g in site.gateways)  # cleaned from every gateway
    for gateway in site.gateways:
        applied = gateway.apply(site.upstreams, outputs["certificate"], outputs["private_key"])
        assert applied.returncode == 0, applied.stderr
    for edge in (0, 1):
        assert verified_handshake(site, edge) == leaf_der(outputs["certificate"])
    not_after = datetime.datetime.fromisoformat(outputs["not_after"])
    assert not_after > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)
    assert "BEGIN PRIVATE KEY" in outputs["private_key"] and "PRIVATE KEY" not in outputs["certificate"]
    print(f"\n[acme issue] bootstrap gateways: {issue_seconds:.1f} s, CA connections per edge {site.http.connections}")


@dataclass
class LoadRecord:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    certificates: list[tuple[float, bytes]] = field(default_factory=list)  # (time, served certificate)


def _client(site: AcmeSite, record: LoadRecord, stopping: threading.Event, keep_alive: bool, limit: int) -> None:
    """HTTPS through the balancer: a new connection per request, or keep-alive retrying once on a
    connection found closed (as browsers do)."""
    context = ssl.create_default_context(cadata=site.ca.issuing_roots())
    conn = None
    while not stopping.is_set() and record.requests < limit:
        record.requests += 1
        for attempt in (1, 2):
            try:
                if conn is None:
                    sock = socket.create_connection(("127.0.0.1", site.https.port), timeout=5)
                    conn = http.client.HTTPSConnection(SERVER_NAME, context=context, timeout=5)
                    conn.sock = context.wrap_socket(sock, server_hostname=SERVER_NAME)
                    record.certificates.append((time.monotonic(), conn.sock.getpeercert(binary_form=True)))
                conn.request("GET", "/api/ping", headers={"Host": SERVER_NAME})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    record.failures.append(f"{response.status} {body[:80]!r}")
                # A response with `Connection: close` (nginx's keepalive_requests reached, an old worker after a
                # reload) leaves no socket, and http.client would reconnect by resolving SERVER_NAME itself.
                if not keep_alive or conn.sock is None:
                    conn.close()
                    conn = None
                break
            except (OSError, http.client.HTTPException) as error:
                conn = None
                if not keep_alive or attempt == 2 or not isinstance(error, (http.client.RemoteDisconnected, ConnectionResetError,
                                                                                  BrokenPipeError, ssl.SSLEOFError)):
                    record.failures.append(repr(error))
                    break


@contextlib.contextmanager
def load(site: AcmeSite, clients: int = 4, limit: int = 20_000):
    records = [LoadRecord() for _ in range(clients)]
    stopping = threading.Event()
    threads = [threading.Thread(target=_client, args=(site, r, stopping, i % 2 == 1, limit), daemon=True) for i, r in enumerate(records)]
    for thread in threads:
        thread.start()
    try:
        yield records
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=30)


def test_an_edge_whose_gateway_does_not_run_yet_is_skipped_and_the_running_one_answers(site, engine):
    """A Swarm stack's first deploy: the certificate waits for the first edge's gateway only (the next
    edges are created once it serves the certificate), so the second edge's container does not exist yet,
    and that edge is out of the balancer's pool. `docker exec` on a real engine says so; the order goes
    through the gateway that runs. With no gateway running, the order fails before the CA is asked."""
    absent = GatewayShell(("docker", "exec", "-i", "carecircle-acme-gateway-not-created-yet"), {"DOCKER_HOST": engine.host},
                          site.gateways[1].shell.responder)
    with trusting(site.ca.listener_ca), pytest.raises(AcmeError, match="no gateway runs to answer"):
        obtain(site.ca.directory_url, [SERVER_NAME], EMAIL, site.account_key, [absent])
    site.http.only = 0  # the balancer's pool: the edge whose gateway runs
    with trusting(site.ca.listener_ca):
        issued = obtain(site.ca.directory_url, [SERVER_NAME], EMAIL, site.account_key, [site.gateways[0].shell, absent])
    leaf = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [SERVER_NAME]
    assert site.gateways[0].tokens() == []  # cleaned


def test_forced_renewal_under_load_serves_the_new_certificate_on_every_edge_without_a_failed_request(site):
    provider = AcmeCertificateProvider()
    first = provider.create(props(site)).outs
    for gateway in site.gateways:
        assert gateway.apply(site.upstreams, first["certificate"], first["private_key"]).returncode == 0
    pids = [g.master_pid for g in site.gateways]
    # The renewal decision: nothing to do 30 days ahead of a 5-year certificate; due when the margin
    # is longer than its lifetime (pebble 2.4 issues for 5 years: the way to force a renewal).
    assert provider.diff("id", first, props(site, margin_days=30)).changes is False
    assert provider.diff("id", first, props(site, margin_days=3650)).changes is True
    # Nothing for the renewal's order to reuse: its challenges are answered (the assertion on connections below).
    assert site.ca.forget_authorizations(site.account_key) >= 1
    site.http.connections.clear()
    with load(site) as records:
        time.sleep(1)
        started = time.monotonic()
        second = provider.update("id", first, props(site, margin_days=3650)).outs
        renewed = time.monotonic()
        for gateway in site.gateways:  # each gateway's configuration command, as pulumi up runs them
            applied = gateway.apply(site.upstreams, second["certificate"], second["private_key"])
            assert applied.returncode == 0, applied.stderr
        applied_at = time.monotonic()
        new = leaf_der(second["certificate"])
        serving = wait_until("both edges serve the new certificate",
                             lambda: all(g.served_certificate() == new for g in site.gateways))
        time.sleep(1)
    requests = sum(r.requests for r in records)
    failures = [f for r in records for f in r.failures]
    assert requests > 200 and not failures, (requests, failures[:5])
    assert set(site.http.connections) == {0, 1}  # the renewal's validation reached both edges too
    assert [g.master_pid for g in site.gateways] == pids  # reloaded in place, never restarted
    seen = [cert for r in records for t, cert in r.certificates if t > applied_at + 0.5]
    assert seen and set(seen) == {new}  # every connection after the apply got the new certificate
    assert second["not_after"] != first["not_after"] or second["certificate"] != first["certificate"]
    print(f"\n[acme renewal] order {renewed - started:.1f} s, apply to 2 edges {applied_at - renewed:.1f} s, "
          f"new certificate on both edges {serving:.2f} s after; {requests} requests, 0 failed")


def test_a_ca_that_refuses_leaves_the_current_certificate_serving_and_fails_clearly_then_a_retry_renews(site):
    provider = AcmeCertificateProvider()
    current = provider.create(props(site)).outs
    for gateway in site.gateways:
        assert gateway.apply(site.upstreams, current["certificate"], current["private_key"]).returncode == 0
    old = leaf_der(current["certificate"])
    # The name now leads the CA to an address where no gateway answers: the challenge fails.
    site.dns.records[SERVER_NAME] = ["127.0.0.2"]
    with pytest.raises(AcmeError) as refused:
        provider.update("id", current, props(site, margin_days=3650))
    message = str(refused.value)
    assert f"ACME certificate for {SERVER_NAME} from {site.ca.directory_url}: the CA's validation failed" in message
    assert "127.0.0.2" in message and "connection refused" in message.lower()
    assert f"the gateways keep serving the current certificate (expires {current['not_after']})" in message
    assert "the next pulumi up tries again" in message
    assert "PRIVATE KEY" not in message
    assert all(g.served_certificate() == old for g in site.gateways)
    assert all(g.tokens() == [] for g in site.gateways)
    # The CA is unreachable: the same.
    with pytest.raises(AcmeError, match="the CA refused or could not be reached: ConnectionError"):
        provider.update("id", current, {**props(site, margin_days=3650), "directory": "https://127.0.0.1:1/dir"})
    assert all(g.served_certificate() == old for g in site.gateways)
    # The next run (state unchanged: still due) succeeds once the cause is gone.
    site.dns.records[SERVER_NAME] = ["127.0.0.1"]
    assert provider.diff("id", current, props(site, margin_days=3650)).changes is True
    renewed = provider.update("id", current, props(site, margin_days=3650)).outs
    assert leaf_der(renewed["certificate"]) != old


def test_a_ca_that_refuses_the_account_fails_with_the_cas_own_problem(tmp_path):
    # pebble demanding external account binding refuses the account: a problem document from the CA,
    # the path a rate limit (urn:ietf:params:acme:error:rateLimited) takes too.
    with acme_site(tmp_path, eab_required=True) as site, trusting(site.ca.listener_ca):
        with pytest.raises(AcmeError) as refused:
            AcmeCertificateProvider().create(props(site))
        assert "urn:ietf:params:acme:error:externalAccountRequired" in str(refused.value)
        assert all(g.tokens() == [] for g in site.gateways)


def test_the_provider_only_counts_names_and_directory_as_a_new_certificate(site):
    provider = AcmeCertificateProvider()
    current = provider.create(props(site)).outs
    assert provider.diff("id", current, {**props(site), "email": "other@carecircle.example"}).changes is False
    assert provider.diff("id", current, {**props(site), "gateways": props(site)["gateways"][:1]}).changes is False
    assert provider.diff("id", current, {**props(site), "names": [SERVER_NAME, "www.carecircle.example"]}).changes is True
    assert provider.diff("id", current, {**props(site), "directory": "https://acme.example/dir"}).changes is True
    print(json.dumps({k: v for k, v in current.items() if k in ("not_before", "not_after")}))
