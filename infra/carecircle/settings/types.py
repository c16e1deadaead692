"""Reusable config value types: each says what a value may be, once, for every key of that kind.
(Addresses, images and URLs are in address_types.py, secrets in secret_types.py.)

Every value arrives from the Pulumi CLI as text. These types take only what the consumer (Docker,
nginx, Prometheus, a URL) accepts, in its plain ASCII spelling: no surrounding or embedded
whitespace, no control or non-ASCII characters (look-alike letters, Unicode digits), no number
spellings that Python or pydantic would quietly accept but the CLI never writes (`1_000`, ` 3`,
`yes`, `nan`). Patterns are matched whole (`re.fullmatch`), so a trailing newline never slips past
`$`. A violation raises `rule(...)`: a message plus the value a fix command should suggest.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Callable, Optional

from pydantic import BeforeValidator, ValidationInfo
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

VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no space
INVISIBLE = "visible ASCII only: no spaces, tabs, newlines or look-alike characters"


def visible_text(value: Any, message: str) -> str:
    """`value` as text of visible ASCII characters, else `message` with the reason."""
    if not isinstance(value, str):
        raise rule(f"{message} (written as text)")
    if not VISIBLE_ASCII.fullmatch(value):
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
def _cpus_the_engine_keeps(text: str) -> Optional[str]:
    from fractions import Fraction

    from ..provider_semantics import read_back_cpus

    if float(text) == 0:
        return "must be more than 0 CPUs"
    if Fraction(read_back_cpus(text).rstrip(".")) != Fraction(text):
        # nanoInt64ToDecimalString rounds it: the container would be replaced on every pulumi up.
        return f"the docker provider reads {text} CPUs back as {read_back_cpus(text)}: use a value it keeps, such as 0.1 or 0.25"
    return None


Cpus = text_type(r"(?:[1-9][0-9]{0,2}|0)(?:\.[0-9]{1,3})?", "must be a decimal number of CPUs such as \"0.5\" or \"2\" (at most 3 decimals)",
                 also=_cpus_the_engine_keeps)
LogSize = text_type(r"[1-9][0-9]{0,4}[kmg]", "must be a size such as 10m (k, m or g)")
JwtLifetime = text_type(r"[1-9][0-9]{0,5}[smhd]", "must be a duration such as 15m, 12h or 7d")
HttpPath = text_type(r"/(?:[A-Za-z0-9._~-]+/?)*", "must be an absolute URL path such as /health (letters, digits, '.', '_', '~', '-', '/')")
ContainerPath = text_type(ABSOLUTE_PATH, "must be an absolute path inside the container, such as /tmp/worker-heartbeat",
                          also=_no_parent_segment)
# Directories of a Linux host (FHS) that hold the system itself: mounting one hands its whole content over.
SYSTEM_DIRECTORIES = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt", "/proc",
    "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share",
    "/var", "/var/lib", "/var/log", "/var/run", "/var/tmp", "/etc/ssl", "/etc/ssl/private", "/etc/pki",
})
# Trees that are the kernel's or the container engine's: devices, process memory, every container's
# secrets and layers, the engines' API sockets.
HOST_CONTROL_TREES = ("/proc", "/sys", "/dev", "/var/lib/docker", "/var/lib/containerd", "/run/docker", "/var/run/docker",
                      "/run/containerd", "/var/run/containerd", "/etc/ssh", "/etc/sudoers.d")
HOST_CREDENTIAL_FILES = frozenset({"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/shadow-", "/etc/gshadow-"})
SSH_KEY_FILE = re.compile(r"id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?(?:\.pub)?|ssh_host_[a-z0-9]+_key(?:\.pub)?|authorized_keys2?|known_hosts")


def _mountable(path: str) -> Optional[str]:
    """Why `path` must never be mounted into a container that faces the internet (None: it may be)."""
    if _no_parent_segment(path):
        return _no_parent_segment(path)
    parts = path.split("/")
    under = [root for root in HOST_CONTROL_TREES if path == root or path.startswith(root + "/")]
    if path in SYSTEM_DIRECTORIES:
        return f"is the system directory {path}: mounting it would hand the gateway all of it"
    if parts[-1].endswith((".sock", ".socket")):
        return "is a Unix socket (the Docker socket is root on the host): mount the certificate file itself"
    # (~/.ssh never gets here: ABSOLUTE_PATH takes no segment that starts with '.'; /etc/ssh is a control tree.)
    if SSH_KEY_FILE.fullmatch(parts[-1]):
        return "is ssh key material: it has nothing to do with the gateway's certificate"
    if path in HOST_CREDENTIAL_FILES:
        return "holds the host's own credentials"
    if under:
        return f"is under {under[0]}, which belongs to the kernel or the container engine (devices, sockets, other containers' data)"
    return None


# A host file mounted (read-only) into the internet-facing gateway.
GatewayMountedFile = text_type(ABSOLUTE_PATH, "must be an absolute path of a file on the Docker host", also=_mountable)
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


def nginx_size_bytes(text: str) -> int:
    """Bytes of a valid nginx size (see nginx_size)."""
    return int(text.rstrip("km")) * {"k": 1024, "m": 1024 * 1024}.get(text[-1], 1)


def nginx_size(maximum_bytes: int) -> Any:
    """An nginx size (512k, 1m, or bytes), at most `maximum_bytes`."""
    check_text = pattern(r"[1-9][0-9]{0,9}[km]?", "must be an nginx size such as 512k or 1m")

    def check(value: Any) -> str:
        text = check_text(value)
        if nginx_size_bytes(text) > maximum_bytes:
            raise rule(f"must be at most {maximum_bytes // (1024 * 1024)}m", f"{maximum_bytes // (1024 * 1024)}m")
        return text

    return Annotated[str, BeforeValidator(check)]


def prometheus_duration(units: str, example: str) -> Any:
    return text_type(rf"[1-9][0-9]{{0,5}}[{units}]", f"must be a duration such as {example} (units: {', '.join(units)})")
