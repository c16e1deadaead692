"""The nginx gateway: routes, TLS, limits, client address, retries, CORS."""

from __future__ import annotations

import re
from typing import Annotated, Any, Iterator, Literal, Optional, Union

from pydantic import BeforeValidator

from .address_types import Cidr, HttpUrl, ImageRef, IPv4Address, covers_everyone
from .base import Environment, Section, Violation, cross_rule, key
from .secret_types import CERTIFICATE, PRIVATE_KEY, secret
from .types import (
    ConfigBool,
    CookieName,
    HostName,
    HostPath,
    Port,
    config_int,
    nginx_size,
    nginx_time,
    nginx_time_ms,
    pattern,
    rule,
    text_type,
)

# Let's Encrypt's ACME directories: production for prod, its staging CA (untrusted certificates, far
# higher rate limits) for every other stack, unless gatewayAcmeDirectory names another.
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# A year: the HSTS preload list's floor, and what a production site should promise at least.
PROD_MIN_HSTS_MAX_AGE = 31_536_000
ROUTES_EXAMPLE = '[{"path":"/api/","service":"api"}]'
CORS_EXAMPLE = "https://app.carecircle.example"
RESERVED_PATHS = ("/", "/health/", "/ready/", "/live/")


def _top_level_alternation(regex: str) -> bool:
    """Whether `a|b` splits the whole pattern (so `^a|b$` anchors neither side fully)."""
    depth, in_class, escaped = 0, False, False
    for char in regex:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


def _cors_origin(value: Any) -> str:
    text = pattern(r"[\x21-\x7e]+", "must be an origin such as https://app.carecircle.example")(value)
    if not text.startswith("~"):
        if not re.fullmatch(r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?", text):
            raise rule(f"{text!r} is not an origin such as https://app.carecircle.example (no path, no *)", CORS_EXAMPLE)
        return text
    regex = text[1:]
    if not (regex.startswith(("^https://", "^http://", "^https?://")) and regex.endswith("$")):
        raise rule(f"pattern {text!r} must be anchored: start with ~^https:// and end with $", "~^https://[a-z0-9-]+\\\\.carecircle\\\\.example$")
    if not re.fullmatch(r"[A-Za-z0-9.:/\\\[\]()?*+^$|-]+", regex):
        raise rule(f"pattern {text!r} may hold only what an origin can (letters, digits, '.', ':', '/', '-') and regex operators "
                   "(no quotes, spaces, ';' or braces)", CORS_EXAMPLE)
    if _top_level_alternation(regex):
        raise rule(f"pattern {text!r} has a top-level '|': ^a|b$ anchors neither side; group it: ~^https://(a|b)$", CORS_EXAMPLE)
    try:
        re.compile(regex)
    except re.error:
        raise rule(f"pattern {text!r} is not a valid regular expression", CORS_EXAMPLE) from None
    return text


CorsOrigin = Annotated[str, BeforeValidator(_cors_origin)]
RoutePath = text_type(r"/(?:[A-Za-z0-9._~-]+/)*", "must start and end with '/' and hold only URL-safe characters")
ProxyConnectTimeout = nginx_time(75)  # nginx: "usually cannot exceed 75 seconds"
ClientTimeout = nginx_time(300)
UpstreamTimeout = nginx_time(3600)
BodySize = nginx_size(1024 * 1024 * 1024)
RatePerSecond = config_int(1, 100_000)
Burst = config_int(0, 100_000)
MaxFails = config_int(1, 100)
NextUpstreamTries = config_int(1, 10)
# nginx reads resolver `valid=` in whole seconds; Docker's DNS answers with a 600 s TTL, so a longer
# cache than that never helps, and the point of the key is to be much shorter.
ResolverValid = nginx_time(600, seconds_only=True)
# nginx reads the upstream server's fail_timeout= in whole seconds too (500ms fails nginx -t).
FailTimeout = nginx_time(3600, seconds_only=True)
HstsMaxAge = config_int(0, 2**31 - 1)
Certificate = secret(CERTIFICATE)
PrivateKey = secret(PRIVATE_KEY)
RenewalMarginDays = config_int(1, 3650)
Email = text_type(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", "must be an e-mail address such as ops@carecircle.example")


def _tls_mode(value: Any) -> Any:
    # `acme`, or a boolean spelled as Pulumi's Config.get_bool takes it.
    if value == "acme":
        return value
    if isinstance(value, bool) or value in ("true", "True", "false", "False"):
        return value in (True, "true", "True")
    raise rule("must be true, false or acme")


TlsMode = Annotated[Union[bool, Literal["acme"]], BeforeValidator(_tls_mode)]


class Route(Section):
    """One gateway route: a path prefix forwarded to an app service."""

    path: RoutePath = key("Path prefix, starting and ending with '/' (so '/api/' never matches '/apifoo').", "/api/")
    service: Literal["api"] = key("App service that serves the prefix.", "api")
    strip_prefix: ConfigBool = key("Forward '/api/x' as '/x' instead of '/api/x'.", False, default=False)
    websocket: ConfigBool = key(
        "Pass WebSocket upgrades (Upgrade: websocket) on this route; no other upgrade (h2c, ...) is ever passed.", False, default=False)


class GatewaySettings(Section):
    gateway_image: ImageRef = key("Nginx image of the gateway.", "nginx:1.30-alpine")
    gateway_preview_port: Optional[Port] = key(
        "Host port on 127.0.0.1 where the gateway serves the idle api pool, to verify a release before the switch.", 8081, default=None)
    gateway_worker_shutdown_timeout: UpstreamTimeout = key(
        "After a reload, how long old nginx workers may finish in-flight requests (and WebSockets).", "30s")
    gateway_bind_address: IPv4Address = key("Host address the gateway publishes on (127.0.0.1 in dev).", "0.0.0.0")
    gateway_http_port: Port = key("Host port for HTTP.", 80)
    gateway_https_port: Port = key("Host port for HTTPS (used when gatewayTls is true).", 443)
    gateway_server_name: HostName = key("Public host name of the gateway.", "api.carecircle.example")
    gateway_routes: list[Route] = key(
        "Routes: list of {path, service, stripPrefix, websocket}. /health, /ready and /live always reach the api.",
        [{"path": "/api/", "service": "api"}])
    gateway_tls: TlsMode = key(
        "Serve HTTPS (required in staging/prod): true (the certificate from gatewayTlsCertificate/Key or the host paths), "
        "acme (obtained and renewed from gatewayAcmeDirectory, docs/certificates.md) or false.", True)
    gateway_tls_certificate: Optional[Certificate] = key("PEM certificate chain, when not read from gatewayTlsCertificatePath.", "<PEM>", default=None)
    gateway_tls_key: Optional[PrivateKey] = key("PEM private key, when not read from gatewayTlsKeyPath.", "<PEM>", default=None)
    gateway_tls_certificate_path: Optional[HostPath] = key(
        "Path of the certificate chain on the Docker host (mounted read-only).", "/etc/carecircle/tls/fullchain.pem", default=None)
    gateway_tls_key_path: Optional[HostPath] = key(
        "Path of the private key on the Docker host (mounted read-only).", "/etc/carecircle/tls/privkey.pem", default=None)
    gateway_acme_directory: Optional[HttpUrl] = key(
        f"ACME directory the certificate comes from (gatewayTls acme); unset: Let's Encrypt ({LETS_ENCRYPT}) for prod, "
        f"its staging CA ({LETS_ENCRYPT_STAGING}) for every other stack.", LETS_ENCRYPT, default=None)
    gateway_acme_email: Optional[Email] = key("Contact e-mail of the ACME account (gatewayTls acme).", "ops@carecircle.example", default=None)
    gateway_acme_account_key: Optional[PrivateKey] = key(
        "PEM private key of the ACME account, EC P-256 or RSA (gatewayTls acme): "
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 | pulumi config set --secret carecircle:gatewayAcmeAccountKey",
        "<PEM>", default=None)
    gateway_acme_renewal_margin_days: RenewalMarginDays = key(
        "gatewayTls acme: the first `pulumi up` less than this many days before the certificate expires renews it.", 30)
    gateway_tls_profile: Literal["modern", "intermediate"] = key(
        "Mozilla TLS profile: modern (TLS 1.3 only) or intermediate (TLS 1.2 + 1.3).", "intermediate")
    gateway_hsts_max_age: HstsMaxAge = key(f"Strict-Transport-Security max-age in seconds (TLS only; prod: at least {PROD_MIN_HSTS_MAX_AGE}).", 63072000)
    gateway_rate_limit_per_second: RatePerSecond = key("Requests per second per client IP.", 10)
    gateway_rate_limit_burst: Burst = key("Requests a client may send above the rate before getting 429.", 20)
    gateway_rate_limit_allowlist: list[Cidr] = key("CIDRs exempt from the rate limit (monitoring, load tests).", ["10.0.0.0/8"])
    gateway_user_rate_limit_per_second: RatePerSecond = key(
        "Requests per second per credential (bearer token, else gatewaySessionCookie), applied on top of the per-IP limit; "
        "requests without a credential get the per-IP limit only.", 10)
    gateway_user_rate_limit_burst: Burst = key("Requests a credential may send above its rate before getting 429.", 20)
    gateway_session_cookie: CookieName = key(
        "Name of the api's session cookie: the per-user limit's credential when a request has no bearer token.", "carecircle_session")
    gateway_trusted_proxies: list[Cidr] = key(
        "CIDRs of L7 proxies in front of the gateway whose X-Forwarded-For (and X-Request-ID) is believed.", ["10.0.0.0/8"])
    gateway_load_balancers: list[Cidr] = key(
        "CIDRs of L4 load balancers in front of the gateway. When set, the public listeners take the PROXY protocol and "
        "believe the client address in it from these CIDRs only; empty: no PROXY protocol.", ["10.0.0.0/8"])
    gateway_client_max_body_size: BodySize = key("Largest request body (413 above it), e.g. 1m.", "1m")
    gateway_client_header_timeout: ClientTimeout = key("Time to receive the request headers.", "10s")
    gateway_client_body_timeout: ClientTimeout = key("Time between two reads of the request body.", "10s")
    gateway_proxy_connect_timeout: ProxyConnectTimeout = key(
        "Time to connect to an api replica (a lost node's replicas cost this much per try: keep it short, a connect "
        "inside the cluster takes milliseconds).", "1s")
    gateway_proxy_read_timeout: UpstreamTimeout = key("Time between two reads from an api replica (also WebSocket idle).", "60s")
    gateway_upstream_max_fails: MaxFails = key("Failures within gatewayUpstreamFailTimeout that take a replica out.", 3)
    gateway_upstream_fail_timeout: FailTimeout = key(
        "Window for max fails, and how long a failed replica stays out (whole seconds).", "10s")
    gateway_proxy_next_upstream_tries: NextUpstreamTries = key(
        "Replicas tried at most per request. Only a connect error or timeout moves a request to the next replica (never "
        "the api's own 5xx), and a POST/PATCH that reached a replica is never sent again.", 3)
    gateway_proxy_next_upstream_timeout: UpstreamTimeout = key(
        "No further replica is tried once a request is this old (shorter than gatewayProxyReadTimeout, so a request that "
        "timed out reading is not sent again).", "5s")
    gateway_resolver_valid: ResolverValid = key(
        "How long nginx keeps the addresses of upstream names it re-resolves (Swarm tasks.<service>); "
        "a change is seen within this plus 1 s.", "5s")
    gateway_cors_origins: list[CorsOrigin] = key(
        "Origins allowed by CORS: exact (https://app.example) or anchored patterns (~^https://[a-z]+\\.example$).", ["https://app.carecircle.example"])
    gateway_cors_allow_credentials: ConfigBool = key(
        "Send Access-Control-Allow-Credentials to allowed origins (the origin is echoed, never *).", False)

    @property
    def gateway_tls_mode(self) -> str:
        """Where the certificate comes from: off, acme, host paths or stack secrets (PEM)."""
        if not self.gateway_tls:
            return "off"
        if self.gateway_tls == "acme":
            return "acme"
        return "host paths" if self.gateway_tls_certificate_path else "stack secrets (PEM)"

    @property
    def acme_directory(self) -> str:
        """The ACME directory in use: the configured one, else Let's Encrypt's for the environment."""
        return self.gateway_acme_directory or (LETS_ENCRYPT if self.environment == "prod" else LETS_ENCRYPT_STAGING)

    @cross_rule
    def _tls_in_production(self, environment: Environment) -> Iterator[Violation]:
        if environment.strict and not self.gateway_tls:
            yield Violation("gateway_tls", f"{environment.strict} serves HTTPS only", True)

    @cross_rule
    def _acme_account(self, environment: Environment) -> Iterator[Violation]:
        if self.gateway_tls != "acme":
            return
        if self.gateway_acme_account_key is None:
            yield Violation("gateway_acme_account_key", "gatewayTls acme needs the ACME account's private key (a secret)")
        if self.gateway_acme_email is None:
            yield Violation("gateway_acme_email", "gatewayTls acme needs the ACME account's contact e-mail")
        for field in ("gateway_tls_certificate", "gateway_tls_key", "gateway_tls_certificate_path", "gateway_tls_key_path"):
            if getattr(self, field) is not None:
                yield Violation(field, "gatewayTls acme obtains the certificate itself: remove this key", "")

    @cross_rule
    def _certificate_and_key(self, environment: Environment) -> Iterator[Violation]:
        if self.gateway_tls is not True:
            return
        pem = (self.gateway_tls_certificate is not None, self.gateway_tls_key is not None)
        path = (self.gateway_tls_certificate_path is not None, self.gateway_tls_key_path is not None)
        if any(pem) and any(path):
            yield Violation("gateway_tls_certificate_path", "give the certificate either as PEM secrets or as host paths, not both", "")
        elif not (all(pem) or all(path)):
            missing = ("gateway_tls_key" if pem[0] else "gateway_tls_certificate" if pem[1]
                       else "gateway_tls_key_path" if path[0] else "gateway_tls_certificate_path" if path[1] else "gateway_tls_certificate")
            yield Violation(missing, "TLS needs a certificate and its key: both PEM secrets (gatewayTlsCertificate, gatewayTlsKey) "
                                     "or both host paths")

    @cross_rule
    def _hsts_in_prod(self, environment: Environment) -> Iterator[Violation]:
        if environment.name == "prod" and self.gateway_tls and self.gateway_hsts_max_age < PROD_MIN_HSTS_MAX_AGE:
            yield Violation("gateway_hsts_max_age", f"prod promises HTTPS for at least a year: at least {PROD_MIN_HSTS_MAX_AGE}", 63072000)

    @cross_rule
    def _trust_is_not_for_everyone(self, environment: Environment) -> Iterator[Violation]:
        for field in ("gateway_trusted_proxies", "gateway_load_balancers", "gateway_rate_limit_allowlist"):
            if environment.strict and covers_everyone(getattr(self, field)):
                yield Violation(field, f"covers every address: in {environment.strict} that would trust (or exempt) any client; "
                                       "list the load balancers' or monitors' own CIDRs", '["10.0.0.0/8"]')

    @cross_rule
    def _credentials_need_origins(self, environment: Environment) -> Iterator[Violation]:
        if self.gateway_cors_allow_credentials and not self.gateway_cors_origins:
            yield Violation("gateway_cors_allow_credentials", "credentials need an explicit list of origins in gatewayCorsOrigins", False)

    @cross_rule
    def _distinct_routes(self, environment: Environment) -> Iterator[Violation]:
        paths = [route.path for route in self.gateway_routes]
        if len(set(paths)) != len(paths):
            yield Violation("gateway_routes", "route paths must be distinct", ROUTES_EXAMPLE)
        if set(RESERVED_PATHS) & set(paths):
            yield Violation("gateway_routes", "'/', /health/, /ready/ and /live/ are routed by the gateway itself", ROUTES_EXAMPLE)

    @cross_rule
    def _one_source_of_the_client_address(self, environment: Environment) -> Iterator[Violation]:
        # Behind an L4 load balancer every X-Forwarded-For (and X-Request-ID) comes from the client
        # itself; believing it from the balancer's addresses would believe every client.
        if self.gateway_load_balancers and self.gateway_trusted_proxies:
            yield Violation("gateway_trusted_proxies",
                            "set either gatewayLoadBalancers (PROXY protocol from L4 load balancers) or gatewayTrustedProxies "
                            "(X-Forwarded-For from L7 proxies), not both: behind an L4 load balancer X-Forwarded-For is written "
                            "by the client", [])

    @cross_rule
    def _every_try_can_connect_within_the_retry_window(self, environment: Environment) -> Iterator[Violation]:
        # A replica whose node is lost does not refuse a connection, it never answers: each such try
        # costs the whole connect timeout, and the next replica must still be tried in the window.
        tries, connect = self.gateway_proxy_next_upstream_tries, nginx_time_ms(str(self.gateway_proxy_connect_timeout))
        window = nginx_time_ms(str(self.gateway_proxy_next_upstream_timeout))
        if tries * connect > window:
            fitting = max(1, window // tries)
            yield Violation("gateway_proxy_connect_timeout",
                            f"{tries} tries of {self.gateway_proxy_connect_timeout} do not fit in gatewayProxyNextUpstreamTimeout "
                            f"({self.gateway_proxy_next_upstream_timeout}): when a node is lost, a request would give up before "
                            "it reached a live replica", f"{fitting // 1000}s" if fitting % 1000 == 0 else f"{fitting}ms")

    @cross_rule
    def _retries_end_before_a_read_timeout(self, environment: Environment) -> Iterator[Violation]:
        # str(): an invalid key stands in as INVALID, whose str() skips the rule.
        if nginx_time_ms(str(self.gateway_proxy_next_upstream_timeout)) >= nginx_time_ms(str(self.gateway_proxy_read_timeout)):
            yield Violation("gateway_proxy_next_upstream_timeout",
                            f"must be shorter than gatewayProxyReadTimeout ({self.gateway_proxy_read_timeout}), or a request "
                            "that timed out reading from one replica is sent to the next (twice the wait, twice the load)", "5s")
