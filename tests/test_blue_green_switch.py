"""Blue-green switches on a real nginx under load, with the stack's own rendering and apply script."""

import collections
import json

from switch_harness import run_switches, summary, switchable_gateway


def _pool(gateway, port=None):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port or gateway.ports.http, timeout=5)
    conn.request("GET", "/api/ping", headers={"Host": gateway.settings.gateway_server_name})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, (json.loads(body).get("pool") if response.status == 200 else body)


def test_switching_under_load_loses_nothing_for_retrying_clients(tmp_path):
    with switchable_gateway(tmp_path) as gateway:
        first = gateway.switch("blue")
        assert first.returncode == 0, first.stderr
        assert "applied and reloaded" in first.stdout
        pid = gateway.master_pid
        run = run_switches(gateway, switches=6, interval=0.7, clients_per_kind=3, max_requests=20_000)
        assert gateway.master_pid == pid  # reloaded in place: the nginx master never restarted
    print(summary(run))
    retrying = run.of(True)
    assert retrying["requests"] > 200  # the load really ran
    errors = collections.Counter(body for client in run.clients for body in client.error_bodies)
    assert retrying["failures"] == 0 and retrying["server_errors"] == 0, (summary(run), errors)
    assert run.of(False)["server_errors"] == 0  # non-retrying clients may only see closed idle connections
    assert [pool for _, _, pool in run.switches] == ["green", "blue", "green", "blue", "green", "blue"]
    # Every request started half a second after a switch finished reached the new pool.
    assert run.late_requests_on_old_pool(grace=0.5) == 0
    pools_seen = {pool for client in run.clients for _, pool in client.responses}
    assert pools_seen == {"blue", "green"}


def test_a_config_that_fails_nginx_t_keeps_the_old_pool_and_fails_loudly(tmp_path):
    with switchable_gateway(tmp_path) as gateway:
        assert gateway.switch("blue").returncode == 0
        broken = gateway.apply_bundle(gateway.render("green", broken_upstream="api-green-1.unresolvable.invalid:3000"))
        assert broken.returncode == 1
        assert "failed nginx -t; still serving the previous one" in broken.stderr
        assert "unresolvable.invalid" in broken.stderr  # nginx's own reason, shown to the operator
        assert all(_pool(gateway) == (200, "blue") for _ in range(10))
        assert gateway.switch("green").returncode == 0  # and the next good config still applies
        assert all(_pool(gateway) == (200, "green") for _ in range(10))


def test_preview_reaches_the_idle_pool_and_an_empty_idle_pool_is_valid(tmp_path):
    with switchable_gateway(tmp_path) as gateway:
        assert gateway.switch("blue").returncode == 0
        assert _pool(gateway, gateway.ports.preview) == (200, "green")
        gateway.pools["green"] = []  # idle pool scaled to zero
        result = gateway.switch("blue")
        assert result.returncode == 0, result.stderr
        status, body = _pool(gateway, gateway.ports.preview)
        assert status == 503 and b"no replicas" in body
        assert _pool(gateway) == (200, "blue")


def test_bootstrap_serves_health_until_the_first_apply(tmp_path):
    import http.client
    with switchable_gateway(tmp_path) as gateway:
        assert _pool(gateway)[0] == 503  # nothing routed before the stack's config arrives
        conn = http.client.HTTPConnection("127.0.0.1", gateway.ports.http, timeout=5)
        conn.request("GET", "/_gateway/health")
        assert conn.getresponse().status == 200


def test_stub_status_is_allowed_from_the_networks_the_gateway_is_on(tmp_path):
    """gateway-apply.sh allows stub_status from each subnet of the container's own networks (the nginx
    exporter beside it connects from one of them, with whatever subnet Docker gave it); here, the host's."""
    import http.client
    import ipaddress
    import subprocess

    def host_subnets() -> set:
        addresses = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"], capture_output=True,
                                              text=True, check=True).stdout)
        return {ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}") for i in addresses for a in i["addr_info"]}

    # Other test sessions may add or remove interfaces meanwhile (a swarm's bridge): the list is judged by
    # the interfaces that were there throughout.
    before = host_subnets()
    with switchable_gateway(tmp_path) as gateway:
        applied = gateway.switch("blue")
        assert applied.returncode == 0, applied.stderr
        stable = before & host_subnets()
        allowed = set((tmp_path / "conf" / "status-allow" / "networks.conf").read_text().splitlines())
        assert {f"allow {subnet.network};" for subnet in stable} <= allowed <= {f"allow {subnet.network};" for subnet in before | host_subnets()}
        assert stable, "no global IPv4 address on this host to check from"
        for address in ["127.0.0.1", *(str(subnet.ip) for subnet in stable)]:
            conn = http.client.HTTPConnection(address, gateway.ports.status, timeout=5)
            conn.request("GET", "/_gateway/nginx_status")
            response = conn.getresponse()
            assert response.status == 200 and b"Active connections" in response.read(), address
