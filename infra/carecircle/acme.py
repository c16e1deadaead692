"""The gateways' ACME certificate (gatewayTls acme): obtained and renewed where `pulumi up` runs.

`AcmeCertificateProvider` is a Pulumi dynamic provider (pulumi.dynamic): the Pulumi CLI runs it in its
own Python process (`python -m pulumi.dynamic`, started in the program's directory, infra/, with the
project's virtualenv: see infra/.venv and docs/certificates.md). Its `diff` is the renewal decision:
a change only when the names or the directory changed, or when the stored certificate's notAfter is
less than gatewayAcmeRenewalMarginDays away; otherwise `pulumi up` and `pulumi preview` show nothing
for it. Its `create`/`update` run one ACME order (RFC 8555) with the `acme` library (certbot's, pinned
in requirements.txt):

1. the account (gatewayAcmeAccountKey) is found or registered with gatewayAcmeEmail;
2. a new private key (EC P-256) is made in this process's memory, never written to a file;
3. for each HTTP-01 challenge, the key authorization is published on every edge gateway through
   templates/gateway-challenge.sh (`docker exec` with that edge's DOCKER_HOST, as the configuration
   apply does), so whichever gateway the CA's request reaches answers it (a gateway whose container
   does not exist or run yet is skipped: its edge takes no traffic); only then is the CA asked to
   validate;
4. the order is finalized, the tokens are removed from every gateway, and the certificate chain and
   key become the resource's outputs: the key is a Pulumi secret (additional_secret_outputs) and
   travels to the gateways only inside their secret configuration bundle.

Anything the CA refuses (a failed challenge, a rate limit, an unreachable directory) raises
`AcmeError`: `pulumi up` fails with the CA's own reason, the state keeps the current certificate (so
the gateways keep serving it), and the next `pulumi up` decides again, so it retries.
"""

from __future__ import annotations

import base64
import datetime
import io
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import josepy as jose
import pulumi
import pulumi.dynamic
import requests
from acme import challenges, client, crypto_util, messages
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CHALLENGE_SCRIPT = (Path(__file__).parent / "templates" / "gateway-challenge.sh").read_text()
TOKEN_DIR = "acme/.well-known/acme-challenge"
# How long one order may take, from the challenges' answers to the certificate (the CA polls).
ORDER_SECONDS = 180
GATEWAY_SECONDS = 60
USER_AGENT = "carecircle-infra"


class AcmeError(Exception):
    """The certificate could not be obtained; the message says why and what still serves."""


class GatewayAbsent(AcmeError):
    """The gateway's container does not exist or does not run (Docker's own answer to `docker exec`)."""


# What `docker exec` prints (docker/cli cli/command/container/exec.go, the daemon's errors) for a container
# that is not there or not running.
ABSENT_MARKERS = ("No such container", "is not running")


@dataclass(frozen=True)
class GatewayShell:
    """How to run a shell inside one gateway: the command prefix (`docker exec -i <container>`), the
    environment it needs (DOCKER_HOST of that edge node), and the configuration it answers challenges
    with while it is still on its bootstrap (rendering.render_challenge_responder_conf)."""

    command: tuple[str, ...]
    environment: Mapping[str, str]
    responder: str

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "GatewayShell":
        return cls(tuple(props["command"]), dict(props.get("environment") or {}), props["challenge_responder"])

    def run(self, action: str, bundle: str = "") -> None:
        argv = [*self.command, "sh", "-c", CHALLENGE_SCRIPT, "gateway-challenge", action]
        try:
            done = subprocess.run(argv, input=bundle, capture_output=True, text=True, timeout=GATEWAY_SECONDS,
                                  env={**os.environ, **self.environment})
        except (OSError, subprocess.TimeoutExpired) as error:
            raise AcmeError(f"gateway ({' '.join(self.command)}): {action} failed: {error}") from None
        if done.returncode != 0:
            error = GatewayAbsent if any(marker in done.stderr for marker in ABSENT_MARKERS) else AcmeError
            raise error(f"gateway ({' '.join(self.command)}): {action} failed: {done.stderr.strip()[-800:]}")


def token_bundle(tokens: Mapping[str, str], responder_conf: str) -> str:
    """What gateway-challenge.sh publish takes: token files (readable by nginx's workers) and the
    responder for a gateway still on its bootstrap configuration."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        entries = {**{f"{TOKEN_DIR}/{token}": text for token, text in sorted(tokens.items())},
                   "challenge-responder.conf": responder_conf}
        for name, text in entries.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


def validity(certificate_pem: str) -> tuple[datetime.datetime, datetime.datetime]:
    """(notBefore, notAfter) of the first certificate of a chain, in UTC."""
    leaf = x509.load_pem_x509_certificate(certificate_pem.encode())
    return leaf.not_valid_before_utc, leaf.not_valid_after_utc


def renewal_due(not_after: datetime.datetime, margin_days: int, now: datetime.datetime) -> bool:
    return now >= not_after - datetime.timedelta(days=margin_days)


def _account(account_key_pem: str) -> tuple[jose.JWK, Any]:
    key = serialization.load_pem_private_key(account_key_pem.encode(), password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return jose.JWKEC(key=key), jose.ES256
    raise AcmeError("carecircle:gatewayAcmeAccountKey must be an RSA or EC P-256 private key")


def _ca_reason(error: BaseException) -> str:
    if isinstance(error, messages.Error):
        return f"{error.typ}: {error.detail}" if error.detail else str(error.typ)
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class Issued:
    certificate: str  # the chain, leaf first
    private_key: str  # PEM (PKCS#8)
    not_before: datetime.datetime
    not_after: datetime.datetime


def obtain(directory: str, names: Sequence[str], email: str, account_key_pem: str, gateways: Sequence[GatewayShell],
           order_seconds: int = ORDER_SECONDS) -> Issued:
    """One ACME order for `names`, its HTTP-01 challenges answered by every gateway."""
    jwk, alg = _account(account_key_pem)
    net = client.ClientNetwork(jwk, alg=alg, user_agent=USER_AGENT)
    published = False
    try:
        acme = client.ClientV2(client.ClientV2.get_directory(directory, net), net)
        try:
            acme.new_account(messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True))
        except acme_errors.ConflictError as existing:  # this key's account exists: use it
            net.account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        order = acme.new_order(crypto_util.make_csr(key_pem, list(names)))
        answers, tokens = [], {}
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue  # the CA reused a valid authorization
            http01 = next((c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if http01 is None:
                raise AcmeError(f"the CA offers no http-01 challenge for {authorization.body.identifier.value}")
            response, key_authorization = http01.response_and_validation(jwk)
            tokens[http01.chall.encode("token")] = key_authorization
            answers.append((http01, response))
        if tokens:
            published = True
            answering = 0
            for gateway in gateways:
                try:
                    gateway.run("publish", token_bundle(tokens, gateway.responder))
                    answering += 1
                except GatewayAbsent as absent:
                    # A Swarm stack's first deploy: the gateways after the first are created once it serves
                    # the certificate (declarations.gateway_certificate). Without a running gateway an
                    # edge is out of the load balancer's pool, so the CA's request cannot reach it.
                    print(f"carecircle: {absent}; skipped: an edge without a running gateway takes no traffic", file=sys.stderr)
            if not answering:
                raise AcmeError("no gateway runs to answer the CA's challenges")
        for http01, response in answers:
            acme.answer_challenge(http01, response)
        finalized = acme.poll_and_finalize(order, datetime.datetime.now() + datetime.timedelta(seconds=order_seconds))
    except acme_errors.ValidationError as error:
        raise AcmeError("the CA's validation failed: " + "; ".join(
            f"{a.body.identifier.value}: {_ca_reason(c.error)}" for a in error.failed_authzrs for c in a.body.challenges if c.error)) from None
    except (acme_errors.Error, messages.Error, requests.RequestException) as error:
        raise AcmeError(f"the CA refused or could not be reached: {_ca_reason(error)}") from None
    finally:
        if published:
            _clean(gateways)
    chain = finalized.fullchain_pem
    leaf = x509.load_pem_x509_certificate(chain.encode())
    issued_names = set(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    if not set(names) <= issued_names or leaf.public_key().public_numbers() != key.public_key().public_numbers():
        raise AcmeError(f"the CA returned a certificate for {sorted(issued_names)} that does not match the order")
    not_before, not_after = validity(chain)
    return Issued(chain, key_pem.decode(), not_before, not_after)


def _clean(gateways: Sequence[GatewayShell]) -> None:
    """Remove the tokens from every gateway. A token left behind is a public value of a finished
    order: reported, never a failure of its own."""
    for gateway in gateways:
        try:
            gateway.run("clean")
        except AcmeError as error:
            print(f"carecircle: {error}", file=sys.stderr)


# Inputs that make another certificate necessary; the rest (account, where the gateways are, the
# margin) only say how to get one, or when.
CERTIFICATE_INPUTS = ("directory", "names")


class AcmeCertificateProvider(pulumi.dynamic.ResourceProvider):
    """Create and update obtain a certificate; diff decides when (see the module's docstring)."""

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [name for name in CERTIFICATE_INPUTS if olds.get(name) != news.get(name)]
        not_after = olds.get("not_after")
        margin = news.get("renewal_margin_days")
        due = not not_after or (isinstance(margin, (int, float)) and renewal_due(
            datetime.datetime.fromisoformat(not_after), int(margin), datetime.datetime.now(datetime.timezone.utc)))
        return pulumi.dynamic.DiffResult(changes=bool(changed) or due, replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=",".join(props["names"]), outs=self._obtain(props, None))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._obtain(news, olds))

    @staticmethod
    def _obtain(props: dict[str, Any], current: Optional[dict[str, Any]]) -> dict[str, Any]:
        try:
            issued = obtain(props["directory"], props["names"], props["email"], props["account_key"],
                            [GatewayShell.from_props(g) for g in props["gateways"]])
        except AcmeError as error:
            serving = (f"the gateways keep serving the current certificate (expires {current['not_after']}); "
                       if current and current.get("not_after") else "")
            raise AcmeError(f"ACME certificate for {', '.join(props['names'])} from {props['directory']}: {error}. "
                            f"{serving}the next pulumi up tries again") from None
        return {
            "directory": props["directory"],
            "names": list(props["names"]),
            "renewal_margin_days": props["renewal_margin_days"],
            "certificate": issued.certificate,
            "private_key": issued.private_key,
            "not_before": issued.not_before.isoformat(),
            "not_after": issued.not_after.isoformat(),
        }
