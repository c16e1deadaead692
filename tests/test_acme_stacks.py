"""What each stack declares in gatewayTls acme mode (under the mocks), what switching to it and back
changes, and that the PEM and host-path modes declare what they did."""

from __future__ import annotations

import json

import pytest

from acme_harness import ACME_CONFIG, ACME_SECRETS, acme_evaluation, acme_settings
from carecircle.components.certificate import ACME_CERTIFICATE_TYPE
from carecircle.offline import evaluate_stack, stack_settings
from carecircle.rendering import render_bootstrap_conf, render_challenge_responder_conf
from carecircle.settings import ConfigError
from carecircle.settings.gateway import LETS_ENCRYPT, LETS_ENCRYPT_STAGING
from helpers import COMMAND, bundle_files, container, on_engine

EDGES = {"prod": ["ssh://deploy@edge-1.prod.carecircle.example", "ssh://deploy@edge-2.prod.carecircle.example"]}


def certificate(evaluation):
    (found,) = evaluation.of_type(ACME_CERTIFICATE_TYPE)
    return found


def upstream_of(evaluation, urn: str) -> set[str]:
    """Every resource `urn` waits for, directly or through others (inputs and depends_on)."""
    dependencies = {r.urn: set(r.dependencies) for r in evaluation.resources}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        for dependency in dependencies.get(todo.pop(), set()) - seen:
            seen.add(dependency)
            todo.append(dependency)
    return seen


@pytest.mark.parametrize(("stack", "directory", "gateways"), [
    ("prod", LETS_ENCRYPT, ["carecircle-prod-gateway-1", "carecircle-prod-gateway-2"]),
    ("staging", LETS_ENCRYPT_STAGING, ["carecircle-staging-gateway-1"]),
    ("dev", LETS_ENCRYPT_STAGING, ["carecircle-dev-gateway"]),
])
def test_acme_mode_declares_one_certificate_answered_by_every_gateway(stack, directory, gateways):
    evaluation = acme_evaluation(stack)
    settings = acme_settings(stack)
    cert = certificate(evaluation)
    assert cert.inputs["directory"] == directory and cert.inputs["names"] == [settings.gateway_server_name]
    assert cert.inputs["renewal_margin_days"] == 30 and cert.inputs["email"] == "ops@carecircle.example"
    assert "account_key" in cert.secret_inputs
    assert cert.additional_secret_outputs == ("private_key",)  # the engine encrypts the issued key in the state
    hosts = settings.swarm_edge_hosts if settings.platform == "swarm" else [settings.docker_host]
    assert cert.inputs["gateways"] == [
        {"command": ["docker", "exec", "-i", name], "environment": {"DOCKER_HOST": host} if host else {},
         "challenge_responder": render_challenge_responder_conf(settings)} for name, host in zip(gateways, hosts, strict=True)]
    # Created after the first gateway's container (the challenges are published into it); the next edges'
    # gateways wait for the first one to serve this certificate (one edge at a time), so waiting for them
    # too would be a cycle: a `pulumi up` that never ends. The graph has none ...
    first, *later = [container(evaluation, name).urn for name in gateways]
    assert first in cert.dependencies
    assert not {*later} & upstream_of(evaluation, cert.urn)
    assert all(cert.urn in upstream_of(evaluation, urn) for urn in later)
    # ... and every gateway's configuration carries its pair, in a secret bundle.
    for index in range(1, len(gateways) + 1):
        config = evaluation.get(COMMAND, f"gateway-{index}-config" if settings.platform == "swarm" else "gateway-config")
        assert "stdin" in config.secret_inputs
        files = bundle_files(config.inputs["stdin"])
        pem = [text for path, text in files.items() if path.endswith("privkey.pem")]
        assert pem and pem[0] in evaluation.secret_values
    assert evaluation.outputs["gatewayCertificateExpiry"] == ""  # known after `pulumi up`
    assert "gatewayCertificateExpiry" not in evaluation.secret_outputs


def test_no_input_outside_a_secret_holds_the_private_key_or_the_account_key():
    evaluation = acme_evaluation("prod")
    secrets = evaluation.secret_values | set(ACME_SECRETS.values())
    for resource in evaluation.resources:
        for name, value in resource.inputs.items():
            if name not in resource.secret_inputs:
                text = json.dumps(value)
                assert not any(secret.strip() in text for secret in secrets), (resource.name, name)


def test_real_outputs_flow_into_the_gateways_bundle():
    outputs = {"certificate": "-----BEGIN CERTIFICATE-----\ncmVhbA==\n-----END CERTIFICATE-----\n",
               "private_key": "-----BEGIN PRIVATE KEY-----\ncmVhbA==\n-----END PRIVATE KEY-----\n",
               "not_before": "2026-12-01T00:00:00+00:00", "not_after": "2027-03-01T00:00:00+00:00"}
    evaluation = acme_evaluation("staging", resource_outputs={"gateway-certificate-acme": outputs})
    files = bundle_files(evaluation.get(COMMAND, "gateway-1-config").inputs["stdin"])
    assert outputs["certificate"] in files.values() and outputs["private_key"] in files.values()
    assert evaluation.outputs["gatewayCertificateExpiry"] == "2027-03-01T00:00:00+00:00"


def test_switching_prod_from_pem_to_acme_and_back_never_replaces_a_gateway_container():
    pem, acme = evaluate_stack("prod"), acme_evaluation("prod")
    for name in ("carecircle-prod-gateway-1", "carecircle-prod-gateway-2"):
        assert container(pem, name).inputs == container(acme, name).inputs
    assert not pem.of_type(ACME_CERTIFICATE_TYPE)


def test_the_bootstrap_containers_start_with_is_unchanged_and_the_responder_only_adds_the_challenges():
    bootstrap = render_bootstrap_conf()
    assert "acme" not in bootstrap  # the uploaded file: a change would replace every gateway container
    responder = render_challenge_responder_conf(acme_settings("prod"))
    assert "location ^~ /.well-known/acme-challenge/" in responder and "carecircle-acme-responder" in responder
    assert "carecircle-config-id" not in responder  # the stack's configuration still replaces it


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"carecircle:gatewayAcmeEmail": None}, "carecircle:gatewayAcmeEmail", "gatewayTls acme needs the ACME account's contact e-mail"),
    ({"carecircle:gatewayTlsCertificatePath": "/etc/carecircle/tls/fullchain.pem"}, "carecircle:gatewayTlsCertificatePath",
     "gatewayTls acme obtains the certificate itself: remove this key"),
    ({"carecircle:gatewayTls": "yes"}, "carecircle:gatewayTls", "must be true, false or acme"),
    ({"carecircle:gatewayAcmeRenewalMarginDays": 0}, "carecircle:gatewayAcmeRenewalMarginDays", ""),
])
def test_acme_config_errors_name_the_key_and_the_fix(change, key, message):
    with pytest.raises(ConfigError) as error:
        evaluate_stack("staging", overrides={**ACME_CONFIG, **change}, secrets=ACME_SECRETS)
    text = str(error.value)
    assert f"  - {key}: {message}" in text and "fix: pulumi config" in text and not error.value.declared


def test_acme_without_the_account_key_asks_for_it_as_a_secret():
    with pytest.raises(ConfigError) as error:
        evaluate_stack("staging", overrides=ACME_CONFIG)
    assert "carecircle:gatewayAcmeAccountKey: gatewayTls acme needs the ACME account's private key" in str(error.value)
    assert "pulumi config set --secret carecircle:gatewayAcmeAccountKey" in str(error.value)


def test_pem_and_host_path_modes_declare_no_certificate_and_keep_their_files():
    prod = evaluate_stack("prod")  # PEM secrets
    assert not prod.of_type(ACME_CERTIFICATE_TYPE) and "gatewayCertificateExpiry" not in prod.outputs
    staging = evaluate_stack("staging")  # host paths, mounted read-only
    gateway = container(staging, "carecircle-staging-gateway-1")
    assert [v["containerPath"] for v in gateway.inputs["volumes"]] == ["/etc/nginx/tls/fullchain.pem", "/etc/nginx/tls/privkey.pem"]
    dev = on_engine("dev")
    assert not dev.of_type(ACME_CERTIFICATE_TYPE)


def test_the_report_shows_mode_directory_names_margin_and_the_current_expiry_when_known():
    from carecircle.audit import report

    outputs = {"certificate": "-----BEGIN CERTIFICATE-----\ncmVhbA==\n-----END CERTIFICATE-----\n",
               "private_key": "-----BEGIN PRIVATE KEY-----\ncmVhbA==\n-----END PRIVATE KEY-----\n",
               "not_before": "2026-12-01T00:00:00+00:00", "not_after": "2027-03-01T00:00:00+00:00"}
    offline = report.markdown(report.build(acme_evaluation("prod"), acme_settings("prod")))
    assert ("- Certificate (ACME): directory `https://acme-v02.api.letsencrypt.org/directory`, names `api.carecircle.example`, "
            "renewed by the first `pulumi up` within 30 days of expiry; alert below 14 days left; "
            "current one expires: known after `pulumi up`: `pulumi stack output gatewayCertificateExpiry`") in offline
    assert "certificate from acme" in offline
    assert "| gateway-certificate-acme.private_key | made where `pulumi up` runs" in offline
    assert "`gateway-1-config.stdin`, `gateway-2-config.stdin`" in offline
    known = report.markdown(report.build(acme_evaluation("prod", resource_outputs={"gateway-certificate-acme": outputs}), acme_settings("prod")))
    assert "current one expires: 2027-03-01T00:00:00+00:00" in known and "cmVhbA" not in known
    pem = report.markdown(report.build(evaluate_stack("prod"), stack_settings("prod")))
    assert "Certificate (ACME)" not in pem and "certificate from stack secrets (PEM)" in pem
