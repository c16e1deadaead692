"""Reusable config value types: each says what a value may be, once, for every key of that kind.

Every value arrives from the Pulumi CLI as text. These types take only what the consumer (Docker,
nginx, Prometheus, a URL) accepts, in its plain ASCII spelling: no surrounding or embedded
whitespace, no control or non-ASCII characters (look-alike letters, Unicode digits), no number
spellings that Python or pydantic would quietly accept but the CLI never writes (`1_000`, ` 3`,
`yes`, `nan`). Patterns are matched whole (`re.fullmatch`), so a trailing newline never slips past
`$`. A violation raises `rule(...)`: a message plus the value a fix command should suggest.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Any, Callable, Optional
from urllib.parse import urlsplit

from pydantic import BeforeValidator, SecretStr, ValidationInfo
from pydantic_core import PydanticCustomError

STRICT_ENVIRONMENTS = ("staging", "prod")


def rule(message: str, fix: Any = None) -> PydanticCustomError:
    """A config rule violation; `fix` is the value to suggest in the `pulumi config set` command."""
    return PydanticCustomError("config_rule", message, {"fix": fix} if fix is not None else {})


def strict_environment(info: ValidationInfo) -> Optional[str]:
    """The environment being validated when it gets the production rules (staging, prod), else None.
    It comes from the validation context (bound to the stack name), never from another key."""
    environment = (info.context or {}).get("environment")
    return environment if environment in STRICT_ENVIRONMENTS else None


# ---- plain text --------------------------------------------------------------------------------

_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no space
INVISIBLE = "visible ASCII only: no spaces, tabs, newlines or look-alike characters"


def visible_text(value: Any, message: str) -> str:
    """`value` as text of visible ASCII characters, else `message` with the reason."""
    if not isinstance(value, str):
        raise rule(f"{message} (written as text)")
    if not _PRINTABLE.fullmatch(value):
        raise rule(f"{message} ({INVISIBLE})")
    return value


def pattern(regex: str, message: str, also: Optional[Callable[[str], Optional[str]]] = None) -> Callable[[Any], str]:
    """A validator that takes visible ASCII text matching `regex` whole; `also` may refuse more (it
    returns a message). Format errors suggest the key's own example as the fix."""
    compiled = re.compile(regex)

    def check(value: Any) -> str:
        text = visible_text(value, message)
        if not compiled.fullmatch(text):
            raise rule(message)
        refused = also(text) if also else None
        if refused:
            raise rule(refused)
        return text

    return check


def text_type(regex: str, message: str, also: Optional[Callable[[str], Optional[str]]] = None) -> Any:
    return Annotated[str, BeforeValidator(pattern(regex, message, also))]


def _no_parent_segment(path: str) -> Optional[str]:
    return "must not contain '..'" if ".." in path.split("/") else None


# ---- numbers and booleans as the CLI writes them -------------------------------------------------

def config_int(minimum: int, maximum: int) -> Any:
    """A whole number in [minimum, maximum], written in ASCII decimal."""
    message = "must be a whole number written with the digits 0-9, without leading zeros"

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise rule(message)
        if isinstance(value, str):
            # No leading zero: YAML 1.1 reads 010 as 8, YAML 1.2 as 10; such a value means nothing safe.
            if not re.fullmatch(r"-?(?:0|[1-9][0-9]{0,11})", visible_text(value, message)):
                raise rule(message)
            value = int(value)
        if not minimum <= value <= maximum:
            raise rule(f"must be between {minimum} and {maximum}", max(minimum, min(value, maximum)))
        return value

    return Annotated[int, BeforeValidator(check)]


def config_float(minimum: float, maximum: float, exclusive_minimum: bool = False) -> Any:
    """A finite decimal number, written in ASCII."""
    message = "must be a decimal number such as 0.5, written with the digits 0-9"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise rule(message)
        if isinstance(value, str):
            if not re.fullmatch(r"-?[0-9]{1,12}(?:\.[0-9]{1,12})?", visible_text(value, message)):
                raise rule(message)
            value = float(value)
        if not math.isfinite(value) or value > maximum or value < minimum or (exclusive_minimum and value == minimum):
            low = f"above {minimum:g}" if exclusive_minimum else f"at least {minimum:g}"
            raise rule(f"must be {low} and at most {maximum:g}")
        return float(value)

    return Annotated[float, BeforeValidator(check)]


def _config_bool(value: Any) -> bool:
    # Pulumi's own Config.get_bool takes exactly these; pydantic alone would also take yes/on/1/t.
    if isinstance(value, bool):
        return value
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    raise rule("must be true or false")


ConfigBool = Annotated[bool, BeforeValidator(_config_bool)]


# ---- names, paths, sizes, durations --------------------------------------------------------------

ABSOLUTE_PATH = r"(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)+"
DockerName = text_type(r"[a-z0-9][a-z0-9_.-]{0,62}", "must be lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
SqlIdentifier = text_type(r"[a-z_][a-z0-9_]{0,62}", "must be a lower-case SQL identifier (letters, digits, '_')")
Port = config_int(1, 65535)
Cpus = text_type(r"(?:[1-9][0-9]{0,2}|0)(?:\.[0-9]{1,3})?", "must be a decimal number of CPUs such as \"0.5\" or \"2\" (at most 3 decimals)",
                 also=lambda v: "must be more than 0 CPUs" if float(v) == 0 else None)
LogSize = text_type(r"[1-9][0-9]{0,4}[kmg]", "must be a size such as 10m (k, m or g)")
JwtLifetime = text_type(r"[1-9][0-9]{0,5}[smhd]", "must be a duration such as 15m, 12h or 7d")
HttpPath = text_type(r"/(?:[A-Za-z0-9._~-]+/?)*", "must be an absolute URL path such as /health (letters, digits, '.', '_', '~', '-', '/')")
ContainerPath = text_type(ABSOLUTE_PATH, "must be an absolute path inside the container, such as /tmp/worker-heartbeat",
                          also=_no_parent_segment)
HostPath = text_type(ABSOLUTE_PATH, "must be an absolute path on the Docker host", also=_no_parent_segment)
RepositoryDirectory = text_type(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*",
                                "must be a relative directory inside this repository", also=_no_parent_segment)
CommandArgument = text_type(r"[\x21-\x7e]{1,512}", "must be a non-empty argument without spaces or control characters")
# A cookie name nginx can find in the Cookie header: RFC 6265 token characters a session library uses
# (express-session's connect.sid, __Host-session), at most 64.
CookieName = text_type(r"[A-Za-z0-9_.-]{1,64}", "must be a cookie name of at most 64 letters, digits, '_', '.' or '-'")
HostName = text_type(r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*",
                     "must be a lower-case DNS host name")

_TIME_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def nginx_time_ms(text: str) -> int:
    """Milliseconds of a valid nginx time (see nginx_time)."""
    number, unit = re.fullmatch(r"([0-9]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return int(number) * _TIME_UNITS_MS[unit]


def nginx_time(maximum_seconds: int, seconds_only: bool = False) -> Any:
    """An nginx time (500ms, 10s, 1m, 1h), at most `maximum_seconds`. `seconds_only`: for the
    parameters nginx reads in whole seconds (resolver `valid=`), which refuse `ms`."""
    if seconds_only:
        check_text = pattern(r"[1-9][0-9]{0,6}(?:s|m|h)", "must be an nginx time in whole seconds such as 5s or 1m (no ms)")
    else:
        check_text = pattern(r"[1-9][0-9]{0,6}(?:ms|s|m|h)", "must be an nginx time such as 500ms, 10s or 1m")

    def check(value: Any) -> str:
        text = check_text(value)
        if nginx_time_ms(text) > maximum_seconds * 1000:
            raise rule(f"must be at most {maximum_seconds}s", f"{maximum_seconds}s")
        return text

    return Annotated[str, BeforeValidator(check)]


def nginx_size(maximum_bytes: int) -> Any:
    """An nginx size (512k, 1m, or bytes), at most `maximum_bytes`."""
    check_text = pattern(r"[1-9][0-9]{0,9}[km]?", "must be an nginx size such as 512k or 1m")

    def check(value: Any) -> str:
        text = check_text(value)
        scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1], 1)
        if int(text.rstrip("km")) * scale > maximum_bytes:
            raise rule(f"must be at most {maximum_bytes // (1024 * 1024)}m", f"{maximum_bytes // (1024 * 1024)}m")
        return text

    return Annotated[str, BeforeValidator(check)]


def prometheus_duration(units: str, example: str) -> Any:
    return text_type(rf"[1-9][0-9]{{0,5}}[{units}]", f"must be a duration such as {example} (units: {', '.join(units)})")


# ---- addresses -----------------------------------------------------------------------------------

def _ipv4_address(value: Any) -> str:
    message = "must be an IPv4 address such as 0.0.0.0 or 127.0.0.1"
    text = visible_text(value, message)
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise rule(message) from None
    return text


def _cidr(value: Any) -> str:
    text = visible_text(value, "must be a CIDR such as 10.0.0.0/8")
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise rule(f"{text!r} is not a CIDR such as 10.0.0.0/8 (host bits unset)", "10.0.0.0/8") from None
    return text


IPv4Address = Annotated[str, BeforeValidator(_ipv4_address)]
Cidr = Annotated[str, BeforeValidator(_cidr)]


def covers_everyone(cidrs: list[str]) -> bool:
    """Whether the CIDRs together hold every IPv4 or every IPv6 address (0.0.0.0/0 in pieces too)."""
    for version, everything in ((4, ipaddress.ip_network("0.0.0.0/0")), (6, ipaddress.ip_network("::/0"))):
        networks = [ipaddress.ip_network(c) for c in cidrs if ipaddress.ip_network(c).version == version]
        if everything in ipaddress.collapse_addresses(networks):  # type: ignore[arg-type]
            return True
    return False


# ---- images --------------------------------------------------------------------------------------

IMAGE_REFERENCE = re.compile(
    r"(?P<name>(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]{1,5})?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)


def _image(value: Any, info: ValidationInfo) -> str:
    message = "must be an image reference such as registry/name:1.2.3 or name@sha256:<digest>"
    match = IMAGE_REFERENCE.fullmatch(visible_text(value, message))
    if not match:
        raise rule(message)
    text = match.group(0)
    strict = strict_environment(info)
    pinned = match["digest"] or (match["tag"] and match["tag"] != "latest")
    if strict and not pinned:
        raise rule(f"{strict} needs an image pinned to a version tag or digest, not latest/untagged", f"{match['name']}:<version>")
    return text


ImageRef = Annotated[str, BeforeValidator(_image)]


def image_parts(reference: str) -> tuple[str, Optional[str], Optional[str]]:
    """(name, tag, digest) of a valid image reference."""
    match = IMAGE_REFERENCE.fullmatch(reference)
    assert match, reference
    return match["name"], match["tag"], match["digest"]


# ---- URLs ----------------------------------------------------------------------------------------

def _url_host_ok(host: Optional[str]) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return bool(re.fullmatch(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*", host))


def _parsed_url(text: str, schemes: tuple[str, ...]):
    """urlsplit of an ASCII URL with one of `schemes`, a valid host and port; None when it is not one."""
    if not _PRINTABLE.fullmatch(text):
        return None
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return None
    if parts.scheme not in schemes or not _url_host_ok(parts.hostname):
        return None
    return parts


def _http_url(value: Any) -> str:
    message = "must be an http(s):// URL with a host name, without credentials"
    text = visible_text(value, message)
    parts = _parsed_url(text, ("http", "https"))
    if parts is None or parts.username is not None or parts.fragment:
        raise rule(message)
    return text


HttpUrl = Annotated[str, BeforeValidator(_http_url)]


def _docker_host(value: Any, info: ValidationInfo) -> str:
    text = visible_text(value, "must be ssh://user@host[:port]")
    strict = strict_environment(info)
    ssh = re.fullmatch(r"ssh://(?P<user>[a-z_][a-z0-9_-]{0,31})@(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?", text)
    if ssh:
        if not _url_host_ok(ssh["host"].strip("[]")) or ssh["host"].startswith("-") or (ssh["port"] and not 1 <= int(ssh["port"]) <= 65535):
            raise rule("must be ssh://user@host[:port] with a valid host name or address")
        return text
    if text.startswith("tcp://"):
        raise rule("tcp:// would carry the Docker API without TLS: use ssh://user@host")
    if re.fullmatch(r"unix:///(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+", text):
        if strict:
            raise rule(f"{strict} deploys to a remote Docker host: set ssh://user@host")
        return text
    raise rule("must be ssh://user@host[:port] (or, in dev, unix:///path/to/docker.sock)")


DockerHost = Annotated[str, BeforeValidator(_docker_host)]


# ---- secrets -------------------------------------------------------------------------------------
# A secret value is never echoed in a message. Each secret type also says how the offline tools fake
# a `secure:` value of its kind (they cannot decrypt), so a faked stack still validates.

class SecretKind:
    """How a secret key is checked, and the fake the offline tools use for its `secure:` value."""

    def __init__(self, check: Callable[[str], Optional[str]], fake: str):
        self.check = check  # returns a message when the value is wrong
        self.fake = fake  # {tag} is derived from the ciphertext

    def validator(self, value: Any) -> SecretStr:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            raise rule("must be text")
        message = self.check(text)
        if message:
            raise rule(message)
        return SecretStr(text)


def secret_url(*schemes: str) -> SecretKind:
    def check(text: str) -> Optional[str]:
        parts = _parsed_url(text, schemes)
        if parts is None:
            return f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}, with a host, in ASCII without spaces"
        return None

    fakes = {"postgresql": "postgresql://fake:fake-{tag}@db.fake.invalid:5432/carecircle?sslmode=require",
             "redis": "rediss://default:fake-{tag}@redis.fake.invalid:6379",
             "amqp": "amqps://fake:fake-{tag}@mq.fake.invalid/carecircle"}
    return SecretKind(check, next(fake for scheme, fake in fakes.items() if scheme in schemes))


MIN_JWT_SECRET = 32


def _jwt_secret(text: str) -> Optional[str]:
    if len(text) < MIN_JWT_SECRET:
        return f"must be at least {MIN_JWT_SECRET} characters (or unset, to generate one)"
    if not _PRINTABLE.fullmatch(text):
        return "must be visible ASCII only (a trailing newline or space would make a different key)"
    return None


def _pem(label: str) -> Callable[[str], Optional[str]]:
    def check(text: str) -> Optional[str]:
        if not re.fullmatch(rf"-----BEGIN {label}-----\n[A-Za-z0-9+/=\n]+\n-----END {label}-----\n?(?:-----BEGIN {label}-----\n[A-Za-z0-9+/=\n]+\n-----END {label}-----\n?)*", text):
            return f"must be PEM text from -----BEGIN {label}----- to -----END {label}-----"
        return None
    return check


def _sentry_dsn(text: str) -> Optional[str]:
    parts = _parsed_url(text, ("https",))
    if parts is None or not parts.username or not re.fullmatch(r"/[0-9]+", parts.path or ""):
        return "must be a Sentry DSN: https://<key>@<host>/<project id>"
    return None


DATABASE_URL = secret_url("postgres", "postgresql")
REDIS_URL = secret_url("redis", "rediss")
RABBITMQ_URL = secret_url("amqp", "amqps")
JWT_SECRET = SecretKind(_jwt_secret, "fake-jwt-{tag}{tag}")
CERTIFICATE = SecretKind(_pem("CERTIFICATE"), "-----BEGIN CERTIFICATE-----\nZmFrZS{tag}\n-----END CERTIFICATE-----\n")
PRIVATE_KEY = SecretKind(_pem("(?:RSA |EC )?PRIVATE KEY"), "-----BEGIN PRIVATE KEY-----\nZmFrZS{tag}\n-----END PRIVATE KEY-----\n")
SENTRY_DSN = SecretKind(_sentry_dsn, "https://fake{tag}@o0.ingest.sentry.invalid/0")


def secret(kind: SecretKind) -> Any:
    # The kind rides along as metadata, so the loader and the offline fakes can find it by field.
    return Annotated[SecretStr, BeforeValidator(kind.validator), kind]
