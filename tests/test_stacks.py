"""What each stack declares, as an auditor would check it: containers, networks, exposure,
volumes and their protection, environment, secrets, images and healthchecks."""

import copy
import json
import os
import subprocess
from urllib.parse import urlsplit

import pytest

from carecircle.audit.blast_radius import rehearsal_stack
from carecircle.audit.report import secret_fragments
from carecircle.offline import evaluate_stack
from helpers import (
    COMMAND,
    CONTAINER,
    DATA_SERVICES,
    PINNED,
    VOLUME,
    bundle_files,
    container,
    decoded_texts,
    env,
    env_names,
    internal_networks,
    networks_of,
    on_engine,
    parent_of,
    published,
)

TRACING_ENV = {"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
               "SENTRY_ENVIRONMENT", "SENTRY_TRACES_SAMPLE_RATE"}
API_ENV = {"NODE_ENV", "PORT", "DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "JWT_SECRET", "JWT_EXPIRES_IN", *TRACING_ENV}
WORKERS_ENV = {"NODE_ENV", "DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "WORKER_HEARTBEAT_FILE", *TRACING_ENV}


def test_dev_declares_every_service_as_a_local_container(engine_stacks):
    assert sorted(engine_stacks["dev"].containers) == [
        "carecircle-dev-api-blue-1",
        "carecircle-dev-gateway",
        "carecircle-dev-postgres",
        "carecircle-dev-rabbitmq",
        "carecircle-dev-redis",
        "carecircle-dev-workers-1",
    ]


@pytest.mark.parametrize("stack, api, workers", [("staging", 2, 2), ("prod", 3, 3)])
def test_staging_and_prod_run_only_apps_and_gateway(engine_stacks, stack, api, workers):
    expected = [f"carecircle-{rehearsal_stack(stack)}-api-blue-{i}" for i in range(1, api + 1)]
    expected += [f"carecircle-{rehearsal_stack(stack)}-gateway", f"carecircle-{rehearsal_stack(stack)}-nginx-exporter", f"carecircle-{rehearsal_stack(stack)}-prometheus",
                 f"carecircle-{rehearsal_stack(stack)}-alertmanager", f"carecircle-{rehearsal_stack(stack)}-blackbox-exporter"]
    expected += [f"carecircle-{rehearsal_stack(stack)}-workers-{i}" for i in range(1, workers + 1)]
    assert sorted(engine_stacks[stack].containers) == sorted(expected)


def test_networks_and_which_are_internal(engine_stacks):
    assert internal_networks(engine_stacks["dev"]) == {"carecircle-dev-edge": False, "carecircle-dev-backend": True}
    for stack in ("staging", "prod"):
        assert internal_networks(engine_stacks[stack]) == {
            f"carecircle-{rehearsal_stack(stack)}-edge": False,
            f"carecircle-{rehearsal_stack(stack)}-backend": True,
            f"carecircle-{rehearsal_stack(stack)}-egress": False,
        }


def test_container_networks_in_dev(engine_stacks):
    dev = engine_stacks["dev"]
    assert networks_of(container(dev, "carecircle-dev-gateway")) == ["carecircle-dev-edge"]
    assert networks_of(container(dev, "carecircle-dev-api-blue-1")) == ["carecircle-dev-backend", "carecircle-dev-edge"]
    assert networks_of(container(dev, "carecircle-dev-workers-1")) == ["carecircle-dev-backend"]
    for service in ("postgres", "redis", "rabbitmq"):
        assert networks_of(container(dev, f"carecircle-dev-{service}")) == ["carecircle-dev-backend"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_workers_reach_managed_services_without_joining_the_edge(engine_stacks, stack):
    workers = container(engine_stacks[stack], f"carecircle-{rehearsal_stack(stack)}-workers-1")
    assert networks_of(workers) == [f"carecircle-{rehearsal_stack(stack)}-backend", f"carecircle-{rehearsal_stack(stack)}-egress"]


def test_dev_publishes_only_on_loopback(engine_stacks):
    dev = engine_stacks["dev"]
    exposed = {name: published(c) for name, c in dev.containers.items() if published(c)}
    assert exposed == {
        "carecircle-dev-gateway": [("127.0.0.1", 8080, 8080), ("127.0.0.1", 8081, 8081)],
        "carecircle-dev-postgres": [("127.0.0.1", 5432, 5432)],
        "carecircle-dev-redis": [("127.0.0.1", 6379, 6379)],
        "carecircle-dev-rabbitmq": [("127.0.0.1", 15672, 15672)],
    }


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_only_the_gateway_publishes_in_a_rehearsal_of_staging_and_prod(engine_stacks, stack):
    exposed = {name: published(c) for name, c in engine_stacks[stack].containers.items() if published(c)}
    # A rehearsal is a dev stack: the gateway's ports on the host's loopback (gatewayBindAddress).
    assert exposed == {f"carecircle-{rehearsal_stack(stack)}-gateway": [("127.0.0.1", 80, 8080), ("127.0.0.1", 443, 8443),
                                                                        ("127.0.0.1", 8081, 8081)]}


def test_dev_volumes_are_named_and_unprotected(engine_stacks):
    dev = engine_stacks["dev"]
    volumes = {v.inputs["name"]: v.protect for v in dev.of_type(VOLUME)}
    assert volumes == {f"carecircle-dev-{s}-data": False for s in ("postgres", "redis", "rabbitmq")}
    mounts = {v["volumeName"]: v["containerPath"] for v in container(dev, "carecircle-dev-postgres").inputs["volumes"]}
    assert mounts == {"carecircle-dev-postgres-data": "/var/lib/postgresql/data"}
    redis = container(dev, "carecircle-dev-redis")
    assert "--appendonly yes" in redis.inputs["command"][-1]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_data_volumes_are_protected_in_staging_and_prod(stacks, stack):
    volumes = stacks[stack].of_type(VOLUME)  # Prometheus's and Alertmanager's on each monitoring node
    assert {v.inputs["name"].removeprefix(f"carecircle-{stack}-").split("-")[0] for v in volumes} == {"alertmanager", "prometheus"}
    assert all(v.protect and v.retain_on_delete for v in volumes)
    # A rehearsal of their config is a dev stack: its volumes, data services' included, go with `pulumi destroy`.
    rehearsal = on_engine(stack, overrides={**DATA_SERVICES, "carecircle:rabbitmqMode": "external"})
    assert sorted(v.inputs["name"] for v in rehearsal.of_type(VOLUME)) == [
        f"carecircle-{rehearsal_stack(stack)}-{role}-data" for role in ("alertmanager", "postgres", "prometheus", "redis")]
    assert not any(v.protect or v.retain_on_delete for v in rehearsal.of_type(VOLUME))


def test_api_and_workers_environment(engine_stacks):
    # dev exports no traces (no endpoint); prod sends them to its collector
    endpoint = {"dev": "OTEL_TRACES_EXPORTER", "staging": "OTEL_TRACES_EXPORTER", "prod": "OTEL_EXPORTER_OTLP_ENDPOINT"}
    for stack, evaluation in engine_stacks.items():
        api = container(evaluation, f"carecircle-{evaluation.stack}-api-blue-1")
        workers = container(evaluation, f"carecircle-{evaluation.stack}-workers-1")
        assert env_names(api) == API_ENV | {endpoint[stack]}
        assert env_names(workers) == WORKERS_ENV | {endpoint[stack]}
    dev_api = env(container(engine_stacks["dev"], "carecircle-dev-api-blue-1"))
    assert dev_api["NODE_ENV"] == "development"
    assert dev_api["PORT"] == "3000"
    assert dev_api["DATABASE_URL"].startswith("postgresql://carecircle:")
    assert dev_api["DATABASE_URL"].endswith("@carecircle-dev-postgres:5432/carecircle")
    assert dev_api["REDIS_URL"].endswith("@carecircle-dev-redis:6379")
    assert dev_api["RABBITMQ_URL"].startswith("amqp://") and dev_api["RABBITMQ_URL"].endswith("@carecircle-dev-rabbitmq:5672")
    assert len(dev_api["JWT_SECRET"]) == 64
    prod_api = env(container(engine_stacks["prod"], "carecircle-dev-prod-rehearsal-api-blue-1"))
    assert prod_api["NODE_ENV"] == "production"
    assert prod_api["DATABASE_URL"].startswith("postgresql://fake:")  # the stack's secret, faked offline


def test_secret_bearing_inputs_are_secret(every_evaluation):
    expected = {"dev": {"api-blue-1", "workers-1", "postgres", "redis", "rabbitmq"},
                "staging+data": {"api-blue-1", "workers-1", "postgres", "redis", "rabbitmq", "postgres-exporter", "redis-exporter"}}
    for stack, evaluation in every_evaluation.items():
        fragments = secret_fragments(evaluation.secret_values)
        bearing = {name.removeprefix(f"carecircle-{evaluation.stack}-") for name, resource in evaluation.containers.items()
                   if any(f in entry for entry in resource.inputs.get("envs", []) for f in fragments)}
        assert expected.get(stack, {"api-blue-1", "workers-1"}) <= bearing, stack  # the check looks at every one of them
        for name in bearing:
            assert "envs" in container(evaluation, f"carecircle-{evaluation.stack}-{name}").secret_inputs, f"{stack}: envs of {name} are not secret"
    prod_config = every_evaluation["prod"].get(COMMAND, "gateway-config")
    assert "stdin" in prod_config.secret_inputs  # the bundle holds the private key


ALL_DATA = DATA_SERVICES


@pytest.fixture(scope="module")
def every_evaluation(engine_stacks):
    """Every stack, and staging/prod with every data service as a container (exporters included)."""
    return {**engine_stacks, "staging+data": on_engine("staging", overrides=ALL_DATA), "prod+data": on_engine("prod", overrides=ALL_DATA)}


def plain_leaks(evaluation):
    """(where, fragment length) of every secret fragment found in a non-secret input or output, also
    inside base64. The secrets are the evaluation's own: every faked config secret and generated
    password, never guessed from variable names."""
    fragments = secret_fragments(evaluation.secret_values)
    places = [(f"{r.name}.{key}", decoded_texts(value)) for r in evaluation.resources
              for key, value in r.inputs.items() if key not in r.secret_inputs]
    places += [(f"output {key}", decoded_texts(value)) for key, value in evaluation.outputs.items() if key not in evaluation.secret_outputs]
    return [(where, len(fragment)) for where, text in places for fragment in fragments if fragment in text]


def test_no_secret_fragment_in_plain_inputs_or_outputs(every_evaluation):
    for name, evaluation in every_evaluation.items():
        generated = evaluation.of_type("random:index/randomPassword:RandomPassword")
        assert generated and len(evaluation.secret_values) >= len(generated), f"{name}: the check must look at every secret"
        assert all(len(fragment) >= 8 for fragment in secret_fragments(evaluation.secret_values)), name
        assert not plain_leaks(evaluation), f"{name}: a secret, or part of one, in a non-secret input or output"


@pytest.mark.parametrize("where", ["label", "command", "base64"])
def test_the_leak_check_finds_a_password_fragment(every_evaluation, where):
    """The check above can fail: a URL's password alone, or base64-encoded, in a plain input is found."""
    import base64

    evaluation = copy.deepcopy(every_evaluation["prod"])
    url = next(v for v in evaluation.secret_values if v.startswith("postgresql://"))
    password = urlsplit(url).password
    workers = evaluation.containers["carecircle-dev-prod-rehearsal-workers-1"]
    if where == "label":
        workers.inputs["labels"].append({"label": "db-password", "value": password})
    elif where == "command":
        workers.inputs["command"] = [*workers.inputs["command"], f"--db-password={password}"]
    else:
        workers.inputs["command"] = [*workers.inputs["command"], base64.b64encode(f"user:{password}".encode()).decode()]
    assert [leak for leak in plain_leaks(evaluation) if leak[0].startswith("workers-1.")]


def _argv_of(command, environment, program, tmp_path, output=""):
    """Run command with `program` replaced by a stub recording its arguments: what the real one gets."""
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir(exist_ok=True)
    record = tmp_path / f"{program}.argv"
    stub = stub_dir / program
    stub.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "{record}"\nprintf "{output}"\n')
    stub.chmod(0o755)
    result = subprocess.run(command, env={**environment, "PATH": f"{stub_dir}:{os.environ['PATH']}"}, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    return record.read_text().splitlines()


@pytest.mark.parametrize("name", ["dev", "staging+data"])
def test_redis_requires_its_generated_password_everywhere(every_evaluation, name, tmp_path):
    evaluation = every_evaluation[name]
    prefix = f"carecircle-{evaluation.stack}-"
    redis = container(evaluation, prefix + "redis")
    password = env(redis)["REDIS_PASSWORD"]
    assert password in evaluation.secret_values and len(password) == 32 and "envs" in redis.secret_inputs
    # the server is started (by a shell, as Docker runs the command) requiring exactly that password
    argv = _argv_of(redis.inputs["command"], {"REDIS_PASSWORD": password}, "redis-server", tmp_path)
    assert "--requirepass" in argv, f"redis starts without a password: {redis.inputs['command']}"
    assert argv[argv.index("--requirepass") + 1] == password
    assert password not in json.dumps(redis.inputs["command"])  # from the secret environment, never the command
    # the healthcheck authenticates with it (CMD-SHELL: Docker runs it with /bin/sh -c)
    kind, script = redis.inputs["healthcheck"]["tests"]
    assert kind == "CMD-SHELL"
    argv = _argv_of(["/bin/sh", "-c", script], {"REDIS_PASSWORD": password}, "redis-cli", tmp_path, output="PONG")
    assert argv[argv.index("-a") + 1] == password and "ping" in argv
    # the apps (and the exporter, where there is one) reach it with it
    users = [c for c in evaluation.containers.values() if "envs" in c.inputs and "REDIS_URL" in env_names(c)]
    assert {c.inputs["name"] for c in users} >= {prefix + "api-blue-1", prefix + "workers-1"}
    for user in users:
        url = urlsplit(env(user)["REDIS_URL"])
        assert (url.hostname, url.port, url.password) == (prefix + "redis", 6379, password), user.inputs["name"]
    if prefix + "redis-exporter" in evaluation.containers:
        assert env(container(evaluation, prefix + "redis-exporter"))["REDIS_PASSWORD"] == password


def test_private_key_is_never_plain(engine_stacks):
    from carecircle.stackfiles import load_stack_config

    key = load_stack_config("prod")[1]["carecircle:gatewayTlsKey"]
    prod = engine_stacks["prod"]
    config = prod.get(COMMAND, "gateway-config")
    assert key in bundle_files(config.inputs["stdin"]).values()  # the key does reach the gateway...
    assert "stdin" in config.secret_inputs  # ...only inside a secret input
    for resource in prod.resources:
        for name, value in resource.inputs.items():
            if name not in resource.secret_inputs:
                assert key not in json.dumps(value, default=str) and key not in decoded_texts(value), (resource.name, name)


def test_stack_outputs(engine_stacks):
    dev = engine_stacks["dev"].outputs
    assert dev["gatewayUrl"] == "http://localhost:8080"
    assert sorted(dev["containers"]) == sorted(engine_stacks["dev"].containers)
    assert dev["networks"] == ["carecircle-dev-edge", "carecircle-dev-backend"]
    assert sorted(dev["volumes"]) == [f"carecircle-dev-{s}-data" for s in ("postgres", "rabbitmq", "redis")]
    assert engine_stacks["prod"].outputs["gatewayUrl"] == "https://api.carecircle.example"
    assert not engine_stacks["prod"].secret_outputs and not engine_stacks["dev"].secret_outputs


def test_replicas_images_and_limits(engine_stacks):
    prod = engine_stacks["prod"]
    for i in (1, 2, 3):
        api = container(prod, f"carecircle-dev-prod-rehearsal-api-blue-{i}")
        assert api.inputs["image"] == "ghcr.io/carecircle/api:1.0.0@sha256:" + "0" * 64
        assert api.inputs["memory"] == 1024 and api.inputs["cpus"] == "1.0"
        workers = container(prod, f"carecircle-dev-prod-rehearsal-workers-{i}")
        assert workers.inputs["command"] == ["node", "dist/worker.js"]
    assert container(prod, "carecircle-dev-prod-rehearsal-gateway").inputs["image"].startswith("nginx:1.30-alpine@sha256:")
    dev = engine_stacks["dev"]
    assert container(dev, "carecircle-dev-postgres").inputs["image"] == "postgres:15"
    assert container(dev, "carecircle-dev-redis").inputs["image"] == "redis:7-alpine"
    assert container(dev, "carecircle-dev-rabbitmq").inputs["image"] == "rabbitmq:3-management"


def test_dev_builds_app_images_from_this_repository(engine_stacks):
    from conftest import REPO_ROOT

    dev = engine_stacks["dev"]
    assert [r.name for r in dev.of_type("docker:index/image:Image")] == ["image-dev-stub-app"]  # built once
    image = dev.get("docker:index/image:Image", "image-dev-stub-app")
    context = image.inputs["build"]["context"]
    assert (REPO_ROOT / context / "Dockerfile").is_file()
    assert image.inputs["skipPush"] is True
    assert container(dev, "carecircle-dev-api-blue-1").inputs["image"].startswith("sha256:")  # the built image id
    assert container(dev, "carecircle-dev-workers-1").inputs["command"] == ["node", "worker.js"]


def test_every_container_has_healthcheck_restart_and_log_rotation(engine_stacks):
    for evaluation in engine_stacks.values():
        for name, resource in evaluation.containers.items():
            assert resource.inputs["healthcheck"]["tests"][0] in ("CMD", "CMD-SHELL"), name
            assert resource.inputs["restart"] == "unless-stopped", name
            assert resource.inputs["logDriver"] == "json-file", name
            assert resource.inputs["logOpts"] == {"max-size": "10m", "max-file": "3"}, name


def test_healthchecks_probe_the_real_service(engine_stacks):
    dev = engine_stacks["dev"]
    assert "pg_isready -U carecircle -d carecircle" in container(dev, "carecircle-dev-postgres").inputs["healthcheck"]["tests"][1]
    redis_check = container(dev, "carecircle-dev-redis").inputs["healthcheck"]["tests"][1]
    assert "redis-cli" in redis_check and '-a "$REDIS_PASSWORD"' in redis_check and "ping" in redis_check
    assert container(dev, "carecircle-dev-rabbitmq").inputs["healthcheck"]["tests"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    api_check = container(dev, "carecircle-dev-api-blue-1").inputs["healthcheck"]["tests"]
    assert api_check[:3] == ["CMD", "node", "-e"] and "http://127.0.0.1:3000/health" in api_check[3]
    gateway_check = container(dev, "carecircle-dev-gateway").inputs["healthcheck"]["tests"][1]
    assert "/_gateway/health" in gateway_check


def test_api_waits_healthy_before_the_gateway_routes_to_it(engine_stacks):
    prod = engine_stacks["prod"]
    config = prod.get(COMMAND, "gateway-config")
    api_urns = {r.urn for name, r in prod.containers.items() if "-api-" in name}
    assert api_urns and api_urns <= set(config.dependencies)
    assert all(prod.containers[f"carecircle-dev-prod-rehearsal-api-blue-{i}"].inputs["wait"] for i in (1, 2, 3))


def test_components_parent_their_children(engine_stacks):
    dev = engine_stacks["dev"]
    expected = {
        "carecircle-dev-postgres": "carecircle:data:DataService",
        "carecircle-dev-api-blue-1": "carecircle:app:AppService",
        "carecircle-dev-gateway": "carecircle:gateway:Gateway",
    }
    for name, component in expected.items():
        assert parent_of(dev, container(dev, name)).type == component
    network = dev.get("docker:index/network:Network", "networks-backend")
    assert parent_of(dev, network).type == "carecircle:network:Networks"


def test_secret_passwords_are_generated_with_random(engine_stacks):
    dev = engine_stacks["dev"]
    names = sorted(r.name for r in dev.of_type("random:index/randomPassword:RandomPassword"))
    assert names == ["jwt-secret", "postgres-password", "rabbitmq-password", "redis-password"]
    assert dev.get("random:index/randomPassword:RandomPassword", "jwt-secret").inputs["length"] == 64
    assert dev.get("random:index/randomString:RandomString", "rabbitmq-user")


def test_prod_gateway_config_is_applied_to_the_running_container(engine_stacks):
    prod = engine_stacks["prod"]
    gateway = container(prod, "carecircle-dev-prod-rehearsal-gateway")
    # The container holds only the constant bootstrap: configuration changes never replace it.
    assert [u["file"] for u in gateway.inputs["uploads"]] == ["/etc/nginx/carecircle/active.conf"]
    assert "_gateway/health" in gateway.inputs["uploads"][0]["content"]
    assert gateway.inputs["command"] == ["nginx", "-c", "/etc/nginx/carecircle/active.conf", "-g", "daemon off;"]
    config = prod.get(COMMAND, "gateway-config")
    assert config.inputs["create"].startswith("docker exec -i carecircle-dev-prod-rehearsal-gateway sh -c ")
    assert "nginx -t" in config.inputs["create"] and "nginx -s reload" in config.inputs["create"]
    assert config.inputs["environment"]["DOCKER_HOST"] == "ssh://deploy@manager-1.prod.carecircle.example"
    files = bundle_files(config.inputs["stdin"])
    conf = files["next.conf"]
    for address in ("172.30.0.16", "172.30.0.17", "172.30.0.18"):  # the blue pool's fixed addresses
        assert f"server {address}:3000 " in conf
    tls = sorted(name for name in files if name.startswith("tls/"))
    assert [name.rsplit("/", 1)[1] for name in tls] == ["fullchain.pem", "privkey.pem"]
    assert f"ssl_certificate_key /etc/nginx/carecircle/{tls[1]};" in conf


def test_staging_gateway_mounts_certificate_from_the_host(engine_stacks):
    gateway = container(engine_stacks["staging"], "carecircle-dev-staging-rehearsal-gateway")
    mounts = {v["containerPath"]: (v["hostPath"], v["readOnly"]) for v in gateway.inputs["volumes"]}
    assert mounts == {
        "/etc/nginx/tls/fullchain.pem": ("/etc/carecircle/tls/fullchain.pem", True),
        "/etc/nginx/tls/privkey.pem": ("/etc/carecircle/tls/privkey.pem", True),
    }


def test_jwt_secret_from_config_replaces_the_generated_one():
    supplied = "s" * 40
    evaluation = evaluate_stack("dev", secrets={"carecircle:jwtSecret": supplied})
    assert env(container(evaluation, "carecircle-dev-api-blue-1"))["JWT_SECRET"] == supplied
    assert not [r for r in evaluation.of_type("random:index/randomPassword:RandomPassword") if r.name == "jwt-secret"]


def test_asserting_on_an_undeclared_resource_fails(engine_stacks):
    with pytest.raises(AssertionError, match="declares no"):
        engine_stacks["prod"].get(CONTAINER, "postgres-container")
    with pytest.raises(AssertionError, match="has no container"):
        container(engine_stacks["prod"], "carecircle-dev-prod-rehearsal-postgres")


def test_api_pools_have_fixed_edge_addresses_and_colour_labels():
    evaluation = on_engine("prod", overrides={"carecircle:apiGreenImage": "ghcr.io/carecircle/api:1.1.0" + PINNED,
                                                   "carecircle:apiGreenReplicas": 3})
    addresses = {}
    for color in ("blue", "green"):
        for i in (1, 2, 3):
            api = container(evaluation, f"carecircle-dev-prod-rehearsal-api-{color}-{i}")
            edge = next(n for n in api.inputs["networksAdvanced"] if n["name"] == "carecircle-dev-prod-rehearsal-edge")
            addresses[api.inputs["name"]] = edge["ipv4Address"]
            labels = {label["label"]: label["value"] for label in api.inputs["labels"]}
            assert labels["com.carecircle.color"] == color
    assert addresses["carecircle-dev-prod-rehearsal-api-blue-1"] == "172.30.0.16"
    assert addresses["carecircle-dev-prod-rehearsal-api-green-1"] == "172.30.0.72"
    assert len(set(addresses.values())) == 6
    edge = evaluation.get("docker:index/network:Network", "networks-edge")
    # Docker hands out only the upper half, so it never takes a pool's fixed address.
    assert edge.inputs["ipamConfigs"] == [{"subnet": "172.30.0.0/24", "ipRange": "172.30.0.128/25"}]


def test_containers_get_a_grace_period_to_drain():
    prod = on_engine("prod")
    api = container(prod, "carecircle-dev-prod-rehearsal-api-blue-1")
    workers = container(prod, "carecircle-dev-prod-rehearsal-workers-1")
    assert (api.inputs["stopSignal"], api.inputs["stopTimeout"], api.inputs["destroyGraceSeconds"]) == ("SIGTERM", 30, 30)
    assert (workers.inputs["stopSignal"], workers.inputs["stopTimeout"], workers.inputs["destroyGraceSeconds"]) == ("SIGTERM", 120, 120)


def test_sentry_dsn_is_a_secret_of_api_and_workers():
    dsn = "https://0123456789abcdef@o1.ingest.sentry.io/42"
    evaluation = on_engine("staging", secrets={"carecircle:sentryDsn": dsn})
    for name in ("carecircle-dev-staging-rehearsal-api-blue-1", "carecircle-dev-staging-rehearsal-workers-1"):
        resource = container(evaluation, name)
        assert env(resource)["SENTRY_DSN"] == dsn and "envs" in resource.secret_inputs
