"""The nginx gateway: routes, TLS, limits, client address, retries, CORS."""

from __future__ import annotations

import re
from typing import Annotated, Any, Iterator, Literal, Optional, Union

from pydantic import AfterValidator, BeforeValidator

from .address_types import CidrList, HttpUrl, ImageRef, IPv4Address, covers_everyone, image_parts
from .base import Environment, Section, Violation, cross_rule, key
from .cors import DEFAULT_PORTS, EXACT_ORIGIN, PatternError, parse_pattern
from .secret_types import CERTIFICATE, PRIVATE_KEY, secret
from .types import (
    ConfigBool,
    CookieName,
    GatewayMountedFile,
    HostName,
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
CORS_PATTERN_EXAMPLE = "~^https://[a-z0-9-]+\\.carecircle\\.example$"
RESERVED_PATHS = ("/", "/health/", "/ready/", "/live/")
# Bounded lists (a config value is at most settings/loading.MAX_VALUE_LENGTH characters anyway).
MAX_ROUTES = 64
MAX_CIDRS = 256
MAX_CORS_ORIGINS = 64


def _cors_origin(value: Any) -> str:
    text = pattern(r"[\x21-\x7e]+", "must be an origin such as https://app.carecircle.example")(value)
    if not text.startswith("~"):
        exact = EXACT_ORIGIN.fullmatch(text)
        if not exact:
            raise rule(f"{text!r} is not an origin such as https://app.carecircle.example (a DNS host name, no path, no *)", CORS_EXAMPLE)
        if exact["port"] and int(exact["port"]) == DEFAULT_PORTS[exact["scheme"]]:
            # A browser leaves the scheme's default port out of the Origin it sends: this would never match.
            raise rule(f"{text!r} names the default port, which a browser's Origin never holds", text.rsplit(":", 1)[0])
        if exact["port"] and int(exact["port"]) > 65535:
            raise rule(f"{text!r} names a port above 65535", text.rsplit(":", 1)[0])
        return text
    try:
        parse_pattern(text[1:])
    except PatternError as error:
        raise rule(f"pattern {text!r} {error}", CORS_PATTERN_EXAMPLE) from None
    try:
        re.compile(text[1:])
    except re.error as error:  # e.g. a class range z-a
        raise rule(f"pattern {text!r} is not a valid regular expression: {error}", CORS_PATTERN_EXAMPLE) from None
    return text


def _distinct_origins(origins: list[str]) -> list[str]:
    # Exact origins are keys of nginx's map, which refuses one listed twice ("conflicting parameter").
    twice = sorted({origin for origin in origins if origins.count(origin) > 1})
    if twice:
        raise rule(f"lists {', '.join(twice)} twice", list(dict.fromkeys(origins)))
    return origins


CorsOrigin = Annotated[str, BeforeValidator(_cors_origin)]
CorsOrigins = Annotated[list[CorsOrigin], AfterValidator(_distinct_origins)]
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
        [{"path": "/api/", "service": "api"}], max_length=MAX_ROUTES)
    gateway_tls: TlsMode = key(
        "Serve HTTPS (required in staging/prod): true (the certificate from gatewayTlsCertificate/Key or the host paths), "
        "acme (obtained and renewed from gatewayAcmeDirectory, docs/certificates.md) or false.", True)
    gateway_tls_certificate: Optional[Certificate] = key("PEM certificate chain, when not read from gatewayTlsCertificatePath.", "<PEM>", default=None)
    gateway_tls_key: Optional[PrivateKey] = key("PEM private key, when not read from gatewayTlsKeyPath.", "<PEM>", default=None)
    gateway_tls_certificate_path: Optional[GatewayMountedFile] = key(
        "Path of the certificate chain on the Docker host (mounted read-only).", "/etc/carecircle/tls/fullchain.pem", default=None)
    gateway_tls_key_path: Optional[GatewayMountedFile] = key(
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
    gateway_rate_limit_allowlist: CidrList = key("CIDRs exempt from the rate limit (monitoring, load tests).", ["10.0.0.0/8"],
                                                 max_length=MAX_CIDRS)
    gateway_user_rate_limit_per_second: RatePerSecond = key(
        "Requests per second per credential (bearer token, else gatewaySessionCookie), applied on top of the per-IP limit; "
        "requests without a credential get the per-IP limit only.", 10)
    gateway_user_rate_limit_burst: Burst = key("Requests a credential may send above its rate before getting 429.", 20)
    gateway_session_cookie: CookieName = key(
        "Name of the api's session cookie: the per-user limit's credential when a request has no bearer token.", "carecircle_session")
    gateway_trusted_proxies: CidrList = key(
        "CIDRs of L7 proxies in front of the gateway whose X-Forwarded-For (and X-Request-ID) is believed.", ["10.0.0.0/8"],
        max_length=MAX_CIDRS)
    gateway_load_balancers: CidrList = key(
        "CIDRs of L4 load balancers in front of the gateway. When set, the public listeners take the PROXY protocol and "
        "believe the client address in it from these CIDRs only; empty: no PROXY protocol.", ["10.0.0.0/8"], max_length=MAX_CIDRS)
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
    gateway_cors_origins: CorsOrigins = key(
        "Origins allowed by CORS: exact (https://app.example) or anchored patterns (~^https://[a-z]+\\.example$).", ["https://app.carecircle.example"],
        max_length=MAX_CORS_ORIGINS)
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
    def _credentials_only_to_origins_the_stack_owns(self, environment: Environment) -> Iterator[Violation]:
        # With credentials, an allowed origin can read answers to requests made with the user's cookie or
        # token: it must be served over HTTPS (a network attacker could inject script into an http://
        # page) and be a host in a domain the stack's owners hold (a pattern anyone's domain matches is a
        # wildcard of origins).
        if not (environment.strict and self.gateway_cors_allow_credentials):
            return
        for index, origin in enumerate(self.gateway_cors_origins):
            if not origin.startswith("~"):
                if origin.startswith("http://"):
                    yield Violation("gateway_cors_origins", f"{environment.strict} sends credentials (gatewayCorsAllowCredentials) "
                                                            f"to HTTPS origins only, not {origin}", "https://" + origin[len("http://"):],
                                    path=f"[{index}]")
                continue
            parsed = parse_pattern(origin[1:])
            if parsed.allows_http:
                yield Violation("gateway_cors_origins", f"{environment.strict} sends credentials to HTTPS origins only: "
                                                        f"{origin} also matches http://", "~^https://" + origin.split("://", 1)[1],
                                path=f"[{index}]")
            elif parsed.pinned_domain() is None:
                yield Violation("gateway_cors_origins", f"{origin} matches hosts in domains anyone can register (a wildcard of "
                                                        f"origins), and {environment.strict} sends them credentials: end the "
                                                        "pattern in the stack's own domain, e.g. \\.carecircle\\.example$",
                                CORS_PATTERN_EXAMPLE, path=f"[{index}]")

    @cross_rule
    def _gateway_image_runs_the_config(self, environment: Environment) -> Iterator[Violation]:
        # The rendered configuration needs `http2 on` (nginx 1.25.1) and, on swarm, `server ... resolve`
        # in an upstream (1.27.3): nginx's docs/xml/nginx/changes.xml. An older image fails `nginx -t`
        # in the middle of `pulumi up`.
        needed, why = ((1, 27, 3), "`server ... resolve` in an upstream (1.27.3)") if self.platform == "swarm" else \
            ((1, 25, 1), "`http2 on` (1.25.1)")  # type: ignore[attr-defined]
        name, tag, digest = image_parts(str(self.gateway_image))
        version = re.match(r"([0-9]+)\.([0-9]+)(?:\.([0-9]+))?(?![0-9])", tag or "")
        example = f"{name}:1.30-alpine" + (f"@{digest}" if digest else "")
        if version is None:
            yield Violation("gateway_image", f"must name its nginx version in the tag (e.g. {name}:1.30-alpine), so that it can be "
                                             f"checked against what the configuration needs: {why}", example)
            return
        # A line (1.27) is its newest release.
        release = (int(version[1]), int(version[2]), int(version[3]) if version[3] else 10**9)
        if release < needed:
            yield Violation("gateway_image", f"nginx {version[0]} cannot run the gateway's configuration, which needs {why}", example)

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
