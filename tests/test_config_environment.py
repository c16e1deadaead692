"""Rules bound to the environment (staging and prod), host paths mounted into the gateway, PEM text,
and values that must not be refused: each table value is refused naming its key where it would break
or weaken an environment, and accepted where it is legitimate (a developer's machine, a file saved on
Windows, a reservation equal to its limit). PEM files are also checked by the real nginx."""

from __future__ import annotations

import string
import subprocess

import pytest
from config_checks import UPSTREAMS, accepted, refused, settings_or_error
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from carecircle.audit.blast_radius import ON_ENGINE
from carecircle.offline import evaluate_stack, stack_settings
from carecircle.rendering import NginxPaths, TlsFiles, render_nginx_conf
from carecircle.settings import ConfigError
from nginx_harness import make_certificate, nginx_test

SECRET = "s3cr3t-Pa55word-0123456789"


def refused_secret(stack: str, key: str, value: str) -> str:
    with pytest.raises(ConfigError) as error:
        evaluate_stack(stack, secrets={key: value})
    assert error.value.declared == [] and SECRET not in str(error.value)  # never echoed
    found = [p for p in error.value.problems if p.key == key]
    assert found and found[0].fix.startswith(f"pulumi config set --secret {key} "), error.value
    return found[0].message


# ---- managed data services over TLS, with credentials -----------------------------------------------------

CLEAR_OR_ANONYMOUS = [
    ("carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@ep-x.neon.tech/carecircle", "no sslmode"),
    ("carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@ep-x.neon.tech/carecircle?sslmode=disable", "sslmode=disable"),
    ("carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@ep-x.neon.tech/carecircle?sslmode=prefer", "sslmode=prefer"),
    ("carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@ep-x.neon.tech/carecircle?sslmode=allow", "sslmode=allow"),
    ("carecircle:databaseUrl", f"postgres://carecircle:{SECRET}@ep-x.neon.tech/db?sslmode=no-verify", "sslmode=no-verify"),
    ("carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@h/db?sslmode=require&sslmode=disable", "sslmode=disable"),
    ("carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@h/db?ssl=true", "no sslmode"),
    ("carecircle:databaseUrl", "postgresql://ep-x.neon.tech/carecircle?sslmode=require", "no user and password"),
    ("carecircle:databaseUrl", "postgresql://carecircle@ep-x.neon.tech/carecircle?sslmode=require", "no user and password"),
    ("carecircle:redisUrl", f"redis://default:{SECRET}@eu1.upstash.io:6379", "rediss://"),
    ("carecircle:redisUrl", "redis://eu1.upstash.io:6379", "rediss://"),
    ("carecircle:redisUrl", "rediss://eu1.upstash.io:6379", "no password"),
    ("carecircle:redisUrl", "rediss://default@eu1.upstash.io:6379", "no password"),
    ("carecircle:rabbitmqUrl", f"amqp://carecircle:{SECRET}@goose.rmq.cloudamqp.com/vhost", "amqps://"),
    ("carecircle:rabbitmqUrl", "amqps://goose.rmq.cloudamqp.com/vhost", "no user and password"),
    ("carecircle:rabbitmqUrl", f"amqps://:{SECRET}@goose.rmq.cloudamqp.com/vhost", "no user and password"),
]


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("key, url, words", CLEAR_OR_ANONYMOUS)
def test_a_managed_service_url_without_tls_or_credentials_is_refused_in_staging_and_prod(stack, key, url, words):
    assert words in refused_secret(stack, key, url)


@pytest.mark.parametrize("key, url", [
    ("carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@ep-x.neon.tech/carecircle?sslmode=require"),
    ("carecircle:databaseUrl", f"postgres://carecircle:{SECRET}@ep-x.neon.tech/carecircle?sslmode=verify-full&application_name=api"),
    ("carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@10.0.0.5:5432/db?sslmode=verify-ca"),
    ("carecircle:redisUrl", f"rediss://default:{SECRET}@eu1.upstash.io:6379"),
    ("carecircle:redisUrl", f"rediss://:{SECRET}@eu1.upstash.io:6379"),  # AUTH with a password alone
    ("carecircle:rabbitmqUrl", f"amqps://carecircle:{SECRET}@goose.rmq.cloudamqp.com/vhost"),
])
def test_a_managed_service_url_over_tls_with_credentials_is_accepted(key, url):
    evaluate_stack("prod", secrets={key: url})


def test_dev_may_reach_a_local_service_in_clear():
    evaluate_stack("dev", overrides={"carecircle:postgresMode": "external"},
                   secrets={"carecircle:databaseUrl": "postgresql://carecircle:dev@host.docker.internal:5432/carecircle"})


# ---- what a production runtime is -------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("key, value, words", [
    ("carecircle:nodeEnv", "development", "NODE_ENV=production"), ("carecircle:nodeEnv", "test", "NODE_ENV=production"),
    ("carecircle:restartPolicy", "no", "unless-stopped or always"),
    ("carecircle:restartPolicy", "on-failure", "unless-stopped or always"),
    ("carecircle:otelExporterEndpoint", "http://otel-collector.carecircle.example:4318", "over HTTPS only"),
    ("carecircle:otelExporterEndpoint", "http://10.0.0.7:4318", "over HTTPS only"),
])
def test_staging_and_prod_run_as_production(stack, key, value, words):
    assert words in refused(stack, {key: value}, key)
    accepted("dev", {key: value})


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("key, value, fix, words", [
    ("carecircle:platform", "engine", "swarm", "as Swarm services spread across nodes"),
    ("carecircle:monitoringEnabled", "false", "true", "no alert fires"),
])
def test_staging_and_prod_run_on_swarm_with_monitoring(stack, key, value, fix, words):
    outcome = settings_or_error(stack, {key: value})
    assert isinstance(outcome, ConfigError) and "Traceback" not in str(outcome) and f"stack '{stack}'" in str(outcome)
    [problem] = [p for p in outcome.problems if p.key == key]
    assert words in problem.message and problem.fix == f"pulumi config set {key} {fix} --stack {stack}"
    accepted("dev", {key: value})


def test_prod_config_rehearsed_on_one_engine_is_a_dev_stack():
    """An operator may run prod's config on one engine without monitoring: as a dev stack, named as such."""
    rehearsal = {**ON_ENGINE, "carecircle:monitoringEnabled": False}
    assert stack_settings("prod", overrides=rehearsal, as_stack="dev-prod-rehearsal").platform == "engine"
    assert {p.key for p in settings_or_error("prod", rehearsal).problems} == {"carecircle:platform", "carecircle:monitoringEnabled"}


def test_staging_and_prod_accept_the_restarting_policies():
    for policy in ("always", "unless-stopped"):
        accepted("prod", {"carecircle:restartPolicy": policy})


# ---- host paths mounted into the gateway ----------------------------------------------------------------

NEVER_MOUNTED = [
    "/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/var/lib/docker/volumes/db/_data/key.pem",
    "/home/deploy/.ssh/id_ed25519", "/home/deploy/.ssh/deploy-key.pem", "/root/.ssh/authorized_keys", "/etc/ssh/ssh_host_ed25519_key", "/srv/keys/id_rsa",
    "/etc", "/", "/var", "/usr", "/root", "/home", "/etc/ssl/private", "/proc/self/environ", "/proc/1/root", "/sys/kernel",
    "/dev/sda", "/dev/mem", "/etc/shadow", "/etc/sudoers", "/var/run/docker/netns/default", "/tmp/docker.socket",
    "/etc/carecircle/../../var/run/docker.sock", "/etc//shadow", "/etc/./shadow", "etc/shadow", "/etc/carecircle/tls/",
]


@pytest.mark.parametrize("key", ["carecircle:gatewayTlsCertificatePath", "carecircle:gatewayTlsKeyPath"])
@pytest.mark.parametrize("path", NEVER_MOUNTED)
def test_a_host_path_that_is_no_certificate_is_never_mounted_into_the_gateway(key, path):
    refused("staging", {key: path}, key)


@pytest.mark.parametrize("certificate, key", [
    ("/etc/letsencrypt/live/api.carecircle.example/fullchain.pem", "/etc/letsencrypt/live/api.carecircle.example/privkey.pem"),
    ("/etc/ssl/certs/carecircle.pem", "/etc/ssl/private/carecircle.key"),
    ("/srv/tls/cert.pem", "/srv/tls/key.pem"),
])
def test_certificate_files_in_the_usual_places_are_mounted_read_only(certificate, key):
    evaluation = evaluate_stack("staging", overrides={"carecircle:gatewayTlsCertificatePath": certificate,
                                                      "carecircle:gatewayTlsKeyPath": key})
    gateway = next(r for r in evaluation.of_type("docker:index/container:Container") if "-gateway-" in r.inputs["name"])
    assert [(v["hostPath"], v["readOnly"]) for v in gateway.inputs["volumes"]] == [(certificate, True), (key, True)]


# ---- PEM: labels that agree, and CRLF line endings -------------------------------------------------------

@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pem")
    files = make_certificate(directory, "api.carecircle.example")
    return directory, (directory / "fullchain.pem").read_text(), (directory / "privkey.pem").read_text(), files


def relabelled(text: str, begin: str, end: str) -> str:
    lines = text.splitlines(keepends=True)
    return lines[0].replace(lines[0].strip("-\n").split(" ", 1)[1], begin, 1) + "".join(lines[1:-1]) + \
        lines[-1].replace(lines[-1].strip("-\n").split(" ", 1)[1], end, 1)


def nginx_takes(directory, certificate: str, key: str) -> tuple[int, str]:
    (directory / "c.pem").write_text(certificate, newline="")
    (directory / "k.pem").write_text(key, newline="")
    conf = render_nginx_conf(stack_settings("prod"), UPSTREAMS, paths=NginxPaths(runtime_dir=str(directory), access_log=str(directory / "a.log")),
                             tls_files=TlsFiles(str(directory / "c.pem"), str(directory / "k.pem")))
    (directory / "nginx.conf").write_text(conf)
    checked = nginx_test(directory, directory / "nginx.conf")
    return checked.returncode, checked.stderr


def test_a_private_key_whose_end_label_differs_is_refused_as_nginx_refuses_it(pem):
    directory, certificate, key, _ = pem
    for begin, end in (("RSA PRIVATE KEY", "EC PRIVATE KEY"), ("PRIVATE KEY", "RSA PRIVATE KEY"), ("EC PRIVATE KEY", "PRIVATE KEY")):
        broken = relabelled(key, begin, end)
        assert "matching -----END" in refused_pem("carecircle:gatewayTlsKey", broken, certificate, key)
    assert nginx_takes(directory, certificate, relabelled(key, "PRIVATE KEY", "RSA PRIVATE KEY"))[0] != 0


def refused_pem(key_name: str, value: str, certificate: str, key: str) -> str:
    secrets = {"carecircle:gatewayTlsCertificate": certificate, "carecircle:gatewayTlsKey": key, key_name: value}
    with pytest.raises(ConfigError) as error:
        evaluate_stack("prod", secrets=secrets)
    assert "Traceback" not in str(error.value)
    found = [p for p in error.value.problems if p.key == key_name]
    assert found, error.value
    return found[0].message


@pytest.mark.parametrize("which, change", [
    ("certificate", lambda c, k: relabelled(c, "CERTIFICATE", "X509 CRL")),
    ("certificate", lambda c, k: k),  # the key in the certificate's place
    ("certificate", lambda c, k: c + "garbage\n"),
    ("certificate", lambda c, k: c.replace("\n", "\n\n", 2)),
    ("certificate", lambda c, k: c.replace("A", "*", 1)),
    ("key", lambda c, k: c),  # the certificate in the key's place
    ("key", lambda c, k: k + k),  # two keys
    ("key", lambda c, k: relabelled(k, "ENCRYPTED PRIVATE KEY", "ENCRYPTED PRIVATE KEY")),  # nginx would need its password
    ("key", lambda c, k: k.replace("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)),
    ("key", lambda c, k: k.rstrip("\n").rstrip("-").rstrip("Y")),  # cut short
])
def test_pem_text_that_is_not_the_file_nginx_expects_is_refused(pem, which, change):
    _, certificate, key, _ = pem
    key_name = "carecircle:gatewayTlsCertificate" if which == "certificate" else "carecircle:gatewayTlsKey"
    assert "PEM" in refused_pem(key_name, change(certificate, key), certificate, key)


def test_pem_files_with_crlf_line_endings_are_accepted_and_nginx_reads_them(pem):
    directory, certificate, key, _ = pem
    crlf_certificate, crlf_key = certificate.replace("\n", "\r\n"), key.replace("\n", "\r\n")
    evaluate_stack("prod", secrets={"carecircle:gatewayTlsCertificate": crlf_certificate, "carecircle:gatewayTlsKey": crlf_key})
    code, output = nginx_takes(directory, crlf_certificate, crlf_key)
    assert code == 0 and "[warn]" not in output, output


def test_an_ec_key_with_its_parameters_block_is_accepted_and_nginx_reads_it(pem, tmp_path):
    directory, _, _, _ = pem
    key = subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey"], capture_output=True, text=True, check=True).stdout
    (tmp_path / "k.pem").write_text(key)
    certificate = subprocess.run(["openssl", "req", "-x509", "-key", str(tmp_path / "k.pem"), "-subj", "/CN=api.carecircle.example",
                                  "-days", "2"], capture_output=True, text=True, check=True).stdout
    assert key.startswith("-----BEGIN EC PARAMETERS-----")
    evaluate_stack("prod", secrets={"carecircle:gatewayTlsCertificate": certificate, "carecircle:gatewayTlsKey": key})
    assert nginx_takes(directory, certificate, key)[0] == 0


# ---- reservations up to their limit -----------------------------------------------------------------------

@pytest.mark.parametrize("app", ["api", "workers"])
@pytest.mark.parametrize("memory", [512, 20_000, 1_048_576])  # 20000 MB was refused: reservations stopped at 10000
def test_a_memory_reservation_equal_to_an_allowed_limit_is_accepted(app, memory):
    accepted("prod", {f"carecircle:{app}MemoryMb": memory, f"carecircle:{app}MemoryReservedMb": memory})
    assert ("at most" if memory < 1_048_576 else "1048576") in refused("prod", {f"carecircle:{app}MemoryMb": memory, f"carecircle:{app}MemoryReservedMb": memory + 1},
                                f"carecircle:{app}MemoryReservedMb")  # above its limit, or above the largest limit


# ---- settings that travel in a swarm service's env file ----------------------------------------------------

@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.text(alphabet=string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%/", max_size=40))
@example(path="it's")
def test_a_trace_endpoint_the_settings_accept_reaches_the_env_file_as_written(path):
    """The env file (KEY='value' lines) cannot hold a single quote: such an endpoint is refused with the
    key, never a ValueError while the program declares the stack."""
    from carecircle.audit.swarm_report import env_file_variables

    endpoint = "https://otel-collector.carecircle.example:4318/" + path
    try:
        evaluation = evaluate_stack("prod", overrides={"carecircle:otelExporterEndpoint": endpoint})
    except ConfigError as error:
        assert [p.key for p in error.problems] == ["carecircle:otelExporterEndpoint"], error
        event("refused: " + ("a single quote" if "'" in endpoint else "not a URL"))
        return
    env_files = evaluation.of_type("docker:index/serviceConfig:ServiceConfig")
    assert env_files and all(env_file_variables(f)["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint for f in env_files)
    event("accepted, and the env file holds it verbatim")
