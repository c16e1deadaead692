"""The certificate's dynamic provider run the way the Pulumi CLI runs it, and what each stack declares
in gatewayTls acme mode (under the mocks).

The CLI starts a Python dynamic provider with its shim (sdk/python/dist/pulumi-resource-pulumi-python:
`$PULUMI_RUNTIME_VIRTUALENV/bin/python -u -m pulumi.dynamic`, the virtualenv taken relative to $PWD)
in the plugin context's directory, which for `main: infra/` is infra/ (pkg/engine/project.go,
getPwdMain; pkg/engine/deployment.go, ProjectInfoContext). So here: the same command from infra/,
gRPC calls as the engine makes them, the provider deserialized from the string the program stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import subprocess

import grpc
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc
from test_acme_gateways import props

from acme_harness import SERVER_NAME, acme_site, trusting
from carecircle.acme import AcmeCertificateProvider
from conftest import REPO_ROOT

URN = "urn:pulumi:staging::carecircle::carecircle:gateway:Certificate$pulumi-python:dynamic/carecircle:AcmeCertificate::gateway-certificate-acme"


def struct(values: dict):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(values, {}))
    finally:
        loop.close()


def plain(message) -> dict:
    return rpc.deserialize_properties(message)


@contextlib.contextmanager
def provider_process(directory):
    """`python -m pulumi.dynamic` from infra/ with the project's virtualenv, as the CLI's shim starts it."""
    infra = REPO_ROOT / "infra"
    python = infra / ".venv" / "bin" / "python"  # $PWD/$PULUMI_RUNTIME_VIRTUALENV/bin/python, PWD=infra
    assert python.exists(), "infra/.venv must lead to the project's virtualenv (the CLI resolves .venv from infra/)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PULUMI_RUNTIME_VIRTUALENV=".venv", PULUMI_PROJECT="carecircle", REQUESTS_CA_BUNDLE=os.environ["REQUESTS_CA_BUNDLE"])
    with open(directory / "provider.stderr", "wb") as stderr:
        process = subprocess.Popen([str(python), "-u", "-m", "pulumi.dynamic"], cwd=infra, env=env,
                                   stdout=subprocess.PIPE, stderr=stderr)
    try:
        port = int(process.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield provider_pb2_grpc.ResourceProviderStub(channel), directory / "provider.stderr"
        finally:
            channel.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_cli_path_creates_then_renews_only_when_due(tmp_path):
    with acme_site(tmp_path) as site, trusting(site.ca.listener_ca):
        # What the program stores: the provider by reference (carecircle.acme), nothing else in it.
        serialized = serialize_provider(AcmeCertificateProvider())
        inputs = {**props(site), "__provider": serialized}
        with provider_process(tmp_path) as (stub, stderr):
            stub.Configure(provider_pb2.ConfigureRequest(acceptSecrets=True))
            created = stub.Create(provider_pb2.CreateRequest(urn=URN, properties=struct(inputs), timeout=300))
            outputs = plain(created.properties)
            assert created.id == SERVER_NAME and "BEGIN CERTIFICATE" in outputs["certificate"]
            due_in = datetime.datetime.fromisoformat(outputs["not_after"]) - datetime.datetime.now(datetime.timezone.utc)
            assert due_in > datetime.timedelta(days=365)
            # Not due: no change, so `pulumi up` has nothing to do.
            quiet = stub.Diff(provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=struct(inputs)))
            assert quiet.changes == provider_pb2.DiffResponse.DIFF_NONE
            # A margin longer than the lifetime: due, an update in place (never a replacement).
            due_inputs = {**inputs, "renewal_margin_days": 3650}
            due = stub.Diff(provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=struct(due_inputs)))
            assert due.changes == provider_pb2.DiffResponse.DIFF_SOME and not due.replaces
            updated = plain(stub.Update(provider_pb2.UpdateRequest(id=created.id, urn=URN, olds=created.properties,
                                                                    news=struct(due_inputs), timeout=300)).properties)
            assert updated["certificate"] != outputs["certificate"] and updated["private_key"] != outputs["private_key"]
            # A refusal reaches the CLI as the provider's error, the CA's reason in it.
            site.dns.records[SERVER_NAME] = ["127.0.0.2"]
            with pytest.raises(grpc.RpcError) as refused:
                stub.Update(provider_pb2.UpdateRequest(id=created.id, urn=URN, olds=created.properties, news=struct(due_inputs), timeout=300))
            assert "the CA's validation failed" in refused.value.details()
            assert "the gateways keep serving the current certificate" in refused.value.details()
            assert "PRIVATE KEY" not in refused.value.details()
        log = stderr.read_text()
        assert "PRIVATE KEY" not in log and site.account_key.splitlines()[1] not in log
