"""The policy pack judges staging and prod from what they declare, without trusting the settings: data
services reached over TLS, no credential or trace over http://, NODE_ENV=production and restarting
containers and tasks, CORS credentials only to HTTPS origins of one domain, Prometheus and Alertmanager
running. Each counter-example fires
exactly its rule; dev (by the stack name in the URN) is free."""

from __future__ import annotations

import base64
import copy

import pytest

from carecircle.audit.policy_check import check, load_policies, policy_resource
from carecircle.offline import stack_settings
from carecircle.rendering import NginxPaths, UpstreamSpec, gateway_bundle, render_nginx_conf
from helpers import CONTAINER

pack = load_policies()
SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
COMMAND = "command:local:Command"
STRONG = "Zq8vN3xR7tK2mW9pL4hB6yD1"


def fired(resources) -> set[str]:
    return {v.policy for v in check(resources)}


def changed(evaluation, type_, name, change, stack=None):
    resources = copy.deepcopy(evaluation.resources)
    found = [r for r in resources if r.type == type_ and name in (r.name, r.inputs.get("name"))]
    assert len(found) == 1, (type_, name)
    change(found[0].inputs)
    if stack:
        old = pack.stack_of(found[0].urn)
        found[0].urn = found[0].urn.replace(f"urn:pulumi:{old}::", f"urn:pulumi:{stack}::", 1)
    return resources


def secret_holding(url):
    return lambda inputs: inputs.update(data=base64.b64encode(url.encode()).decode())


def env_with(**values):
    return lambda inputs: inputs["taskSpec"]["containerSpec"]["env"].update(values)


# ---- encrypted-connections ------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("url", [
    f"postgresql://carecircle:{STRONG}@ep-x.neon.tech/carecircle", f"postgresql://carecircle:{STRONG}@ep-x.neon.tech/db?sslmode=disable",
    f"postgres://carecircle:{STRONG}@ep-x.neon.tech/db?sslmode=prefer", f"redis://default:{STRONG}@eu1.upstash.io:6379",
    f"amqp://carecircle:{STRONG}@goose.rmq.cloudamqp.com/vhost", f"http://key:{STRONG}@sentry.example/1",
])
def test_a_swarm_secret_holding_a_clear_connection_is_refused(stacks, stack, url):
    resources = changed(stacks[stack], SECRET, f"carecircle-{stack}-database-url", secret_holding(url))
    assert fired(resources) == {"encrypted-connections"}
    assert STRONG not in " ".join(v.message for v in check(resources))  # the value is never reported


@pytest.mark.parametrize("variable", [{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.example:4318"},
                                      {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://10.0.0.7:4318/v1/traces"}])
def test_traces_over_http_are_refused(stacks, variable):
    assert fired(changed(stacks["prod"], SERVICE, "carecircle-prod-api-blue", env_with(**variable))) == {"encrypted-connections"}


def test_a_container_reaching_a_managed_service_in_clear_is_refused():
    from helpers import strict_on_engine

    def clear_database(inputs):
        inputs["envs"] = [e if not e.startswith("DATABASE_URL=") else f"DATABASE_URL=postgresql://u:{STRONG}@ep-x.neon.tech/db"
                          for e in inputs["envs"]]
    prod = strict_on_engine("prod")  # prod's config on one engine, judged as prod
    assert fired(changed(prod, CONTAINER, "carecircle-dev-prod-rehearsal-workers-1", clear_database)) == {"encrypted-connections"}


def test_a_url_to_a_container_of_the_stack_itself_stays_on_its_network():
    """A data service run by the stack is reached over its internal network, where TLS is not needed."""
    from helpers import DATA_SERVICES, strict_on_engine

    evaluation = strict_on_engine("staging", overrides={**DATA_SERVICES, "carecircle:redisMode": "container"})
    workers = next(r for r in evaluation.of_type(CONTAINER) if r.inputs["name"] == "carecircle-dev-staging-rehearsal-workers-1")
    assert any(e.startswith("REDIS_URL=redis://") for e in workers.inputs["envs"])
    assert "encrypted-connections" not in fired(evaluation.resources)


@pytest.mark.parametrize("change", [secret_holding(f"redis://default:{STRONG}@eu1.upstash.io:6379"),
                                    secret_holding(f"postgresql://u:{STRONG}@h/db?sslmode=require")])
def test_dev_and_tls_connections_pass(stacks, change):
    assert fired(changed(stacks["prod"], SECRET, "carecircle-prod-database-url", change, stack="dev-alice")) == set()
    assert "encrypted-connections" not in fired(changed(stacks["prod"], SECRET, "carecircle-prod-redis-url",
                                                        secret_holding(f"rediss://default:{STRONG}@eu1.upstash.io:6379")))


# ---- production-runtime ----------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_apps_run_with_node_env_production(stacks, stack):
    resources = changed(stacks[stack], SERVICE, f"carecircle-{stack}-workers", env_with(NODE_ENV="development"))
    assert fired(resources) == {"production-runtime"}
    assert fired(changed(stacks[stack], SERVICE, f"carecircle-{stack}-workers", env_with(NODE_ENV="development"),
                         stack="dev")) == set()


def test_a_task_that_exited_zero_must_come_back(stacks):
    on_failure = lambda i: i["taskSpec"]["restartPolicy"].update(condition="on-failure")  # noqa: E731
    assert fired(changed(stacks["prod"], SERVICE, "carecircle-prod-api-blue", on_failure)) == {"production-runtime"}


@pytest.mark.parametrize("policy", ["on-failure", "on-failure:3"])
def test_a_container_that_exited_zero_must_come_back(stacks, policy):
    resources = changed(stacks["prod"], CONTAINER, "carecircle-prod-gateway-1", lambda i: i.update(restart=policy))
    assert fired(resources) == {"production-runtime"}


def env_file(**values):
    """A service's env file (a Swarm config) with these variables changed."""
    def change(inputs):
        from carecircle.components.swarm_service import render_env_file

        current = pack.dotenv_variables(pack.config_text(inputs))
        inputs["data"] = base64.b64encode(render_env_file({**current, **values}).encode()).decode()
    return change


@pytest.mark.parametrize("variables, rule", [
    ({"NODE_ENV": "development"}, "production-runtime"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.example:4318"}, "encrypted-connections"),
])
def test_a_services_env_file_is_judged_as_its_environment(stacks, variables, rule):
    config = next(r.name for r in stacks["prod"].resources if r.type == "docker:index/serviceConfig:ServiceConfig" and "api-blue" in r.name)
    resources = changed(stacks["prod"], "docker:index/serviceConfig:ServiceConfig", config, env_file(**variables))
    assert fired(resources) == {rule}
    assert fired(changed(stacks["prod"], "docker:index/serviceConfig:ServiceConfig", config, env_file(**variables), stack="dev")) == set()


def test_the_committed_env_files_are_read(stacks):
    """Not vacuous: the pack finds NODE_ENV and the trace endpoint in the env files prod declares."""
    configs = [r for r in stacks["prod"].resources if r.type == "docker:index/serviceConfig:ServiceConfig"]
    variables = [pack.dotenv_variables(pack.config_text(c.inputs)) for c in configs]
    assert configs and all(v.get("NODE_ENV") == "production" and v["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("https://") for v in variables)


# ---- cors-credentials-owned-origins -----------------------------------------------------------------------

def gateway_config(origins: list[str], credentials: bool):
    settings = stack_settings("dev", overrides={"carecircle:gatewayCorsOrigins": origins, "carecircle:gatewayCorsAllowCredentials": credentials})
    upstreams: dict[str, UpstreamSpec] = {"api": ["127.0.0.1:3000"]}
    return lambda inputs: inputs.update(stdin=gateway_bundle(NginxPaths(), render_nginx_conf(settings, upstreams)))


@pytest.mark.parametrize("origin", ["~^https://.*$", "~^https://[a-z0-9-]+\\.example$", "~^https?://app\\.carecircle\\.example$",
                                    "http://app.carecircle.example", "~^http://app\\.carecircle\\.example$",
                                    "~^https://[a-z]+\\.co\\.uk$", "~^https://[a-z0-9-]+\\.github\\.io$"])
def test_the_gateway_sends_credentials_only_to_https_origins_of_one_domain(stacks, origin):
    resources = changed(stacks["prod"], COMMAND, "gateway-1-config", gateway_config([origin], credentials=True))
    assert fired(resources) == {"cors-credentials-owned-origins"}
    assert fired(changed(stacks["prod"], COMMAND, "gateway-1-config", gateway_config([origin], credentials=False))) == set()


@pytest.mark.parametrize("origin", ["~^https://[a-z0-9-]+\\.carecircle\\.example$", "https://app.carecircle.example",
                                    "~^https://(app|admin)\\.carecircle\\.example$", "~^https://app\\.carecircle\\.example$",
                                    "~^https://[a-z]+\\.carecircle\\.co\\.uk$"])
def test_own_https_origins_with_credentials_pass(stacks, origin):
    assert fired(changed(stacks["prod"], COMMAND, "gateway-1-config", gateway_config([origin], credentials=True))) == set()


def test_the_pack_reads_the_committed_gateways_origins(stacks):
    """The rule is not vacuous: it finds the origins prod really sends credentials to."""
    bundle = next(r for r in stacks["prod"].resources if r.type == COMMAND and r.name == "gateway-1-config").inputs["stdin"]
    assert pack.cors_origins_with_credentials(bundle) == ["https://app.carecircle.example"]


# ---- monitoring-on -----------------------------------------------------------------------------------------

def without(resources, unwanted) -> list:
    return [r for r in copy.deepcopy(resources) if not unwanted(r)]


def runs_prometheus(resource) -> bool:
    return resource.type == CONTAINER and "prometheus" in resource.inputs["image"].split("@")[0].rsplit("/", 1)[-1].split(":")[0]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_staging_and_prod_run_prometheus_and_alertmanager(stacks, stack):
    """What a program that dropped monitoring would declare (the settings refuse monitoringEnabled false there)."""
    no_prometheus = without(stacks[stack].resources, runs_prometheus)
    assert len(no_prometheus) < len(stacks[stack].resources)
    assert [(v.policy, v.message.split(":")[0]) for v in check(no_prometheus)] == [("monitoring-on", f"{stack} runs no Prometheus")]
    no_alertmanager = without(stacks[stack].resources, lambda r: r.type == COMMAND and pack.alertmanager_configs([policy_resource(r)]))
    assert len(no_alertmanager) < len(stacks[stack].resources)
    assert "monitoring-on" in fired(no_alertmanager)


def test_a_dev_stack_may_run_without_monitoring(engine_stacks):
    from helpers import on_engine

    assert fired(engine_stacks["dev"].resources) == set()  # Pulumi.dev.yaml: monitoring off
    assert fired(on_engine("prod", {"carecircle:monitoringEnabled": False}).resources) == set()  # prod's config rehearsed
