"""The rendered gateway config on a real nginx of production's line: valid for every stack, routing
correct."""

import os
import re
import subprocess

import pytest

from carecircle.rendering import GatewayPorts
from carecircle.settings.address_types import image_parts
from nginx_harness import free_port, make_certificate, nginx, nginx_test, running_gateway, settings_for, stub_upstreams, write_conf


def test_the_tests_run_the_nginx_line_every_stack_deploys():
    version = subprocess.run([nginx(), "-v"], capture_output=True, text=True, timeout=30).stderr
    tested = re.search(r"nginx/(\d+\.\d+)\.\d+", version).group(1)  # type: ignore[union-attr]
    for stack in ("dev", "staging", "prod"):
        _, tag, _ = image_parts(settings_for(stack).gateway_image)
        assert tag and tag.split("-")[0] == tested, (stack, tag, version)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_config_passes_nginx_t(tmp_path, stack):
    settings = settings_for(stack)
    tls = make_certificate(tmp_path, settings.gateway_server_name) if settings.gateway_tls else None
    ports = GatewayPorts(http=free_port(), https=free_port(), preview=free_port(), status=free_port())
    # Upstream names pointed at 127.0.0.1, as many as the stack has replicas.
    active = settings.api_replicas(settings.api_active_color)
    conf = write_conf(tmp_path, settings, [f"127.0.0.1:{3000 + i}" for i in range(active)], ports, tls)
    result = nginx_test(tmp_path, conf)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr, result.stderr  # e.g. nothing deprecated in 1.30 (`listen ... http2`)


def test_nginx_t_rejects_a_broken_config(tmp_path):
    settings = settings_for("dev")
    conf = write_conf(tmp_path, settings, ["127.0.0.1:3000"], GatewayPorts(free_port(), free_port(), free_port(), free_port()), None)
    conf.write_text(conf.read_text().replace("proxy_pass http://api;", "proxy_pass http://api", 1))
    assert nginx_test(tmp_path, conf).returncode != 0


def test_routes_health_and_catch_all(tmp_path):
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings_for("dev"), upstreams) as gateway:
        echoed = gateway.echo("/api/care-plans?page=2&sort=due")
        assert echoed["path"] == "/api/care-plans?page=2&sort=due"  # full URI and query kept
        for path in ("/health", "/ready", "/live"):
            assert gateway.echo(path)["path"] == path
        status, headers, body = gateway.request("GET", "/apifoo")
        assert status == 404 and b"Not Found" in body  # no prefix escape into /api/
        status, _, _ = gateway.request("GET", "/somewhere-else")
        assert status == 404
        status, _, body = gateway.request("GET", "/_gateway/health")
        assert (status, body) == (200, b"ok\n")


def test_strip_prefix_route_has_no_double_slash(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayRoutes": [{"path": "/v2/", "service": "api", "stripPrefix": True}]})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        assert gateway.echo("/v2/users/7?x=1")["path"] == "/users/7?x=1"
        assert gateway.echo("/v2/")["path"] == "/"
        assert gateway.request("GET", "/v2x")[0] == 404


def test_prod_spreads_requests_over_every_replica_over_https(tmp_path):
    settings = settings_for("prod", {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]})
    with stub_upstreams(settings.api_replicas("blue")) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        replicas = {gateway.echo("/api/ping", tls=True)["replica"] for _ in range(30)}
        assert replicas == {1, 2, 3}
        status, headers, _ = gateway.request("GET", "/api/ping?a=1")
        assert status == 308 and headers["location"] == "https://api.carecircle.example/api/ping?a=1"
        echoed = gateway.echo("/api/ping", tls=True, headers={"X-Forwarded-For": "6.6.6.6"})
        assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"  # forged header not passed through
        assert echoed["headers"]["x-forwarded-proto"] == "https"


def test_each_worker_is_pinned_to_its_own_core(tmp_path):
    """worker_processes auto + worker_cpu_affinity auto: one worker per core, each on its own (the
    kernel would otherwise often leave two on one core: docs/benchmarks.md)."""
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings_for("dev"), upstreams) as gateway:
        workers = subprocess.run(["pgrep", "-P", str(gateway.process.pid)], capture_output=True, text=True, timeout=10).stdout.split()
        masks = [os.sched_getaffinity(int(pid)) for pid in workers]
    assert len(masks) == os.sysconf("SC_NPROCESSORS_ONLN") and all(len(mask) == 1 for mask in masks), masks
    assert len(set().union(*masks)) == len(masks), masks
