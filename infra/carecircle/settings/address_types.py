"""Config value types for where things are: addresses, networks, images, URLs, the Docker host."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Optional
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, ValidationInfo

from .types import VISIBLE_ASCII, rule, strict_environment, visible_text

# ---- addresses -----------------------------------------------------------------------------------

def _ipv4_address(value: Any) -> str:
    message = "must be an IPv4 address such as 0.0.0.0 or 127.0.0.1"
    text = visible_text(value, message)
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise rule(message) from None
    return text


# The forms nginx's ngx_ptocidr (src/core/ngx_inet.c) reads, for set_real_ip_from, geo and allow: an
# address (ngx_inet_addr: dotted quad; ngx_inet6_addr: hex groups, '::', a dotted tail) and an
# optional decimal prefix length (ngx_atoi). Python's ipaddress also takes a netmask or hostmask
# after the '/' (10.0.0.0/255.0.0.0, which nginx takes for a host name to resolve) and a zone
# (fe80::%eth0): nginx does not. Both read a padded length (/08) as 8.
NGINX_CIDR = re.compile(r"(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)(?:/[0-9]{1,3})?")


def _cidr(value: Any) -> str:
    text = visible_text(value, "must be a CIDR such as 10.0.0.0/8")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise rule(f"{text!r} is not a CIDR such as 10.0.0.0/8 (host bits unset)", "10.0.0.0/8") from None
    if not NGINX_CIDR.fullmatch(text):
        raise rule(f"{text!r} is not a CIDR nginx reads: an address and a prefix length, such as {network}", str(network))
    return text


def _distinct_networks(cidrs: list[str]) -> list[str]:
    # nginx's geo warns on a network listed twice (and set_real_ip_from repeats it): compared as networks.
    first: dict[Any, str] = {}
    twice = []
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        if network in first:
            twice.append(f"{first[network]!r} and {cidr!r}")
        first.setdefault(network, cidr)
    if twice:
        raise rule(f"lists a network twice ({'; '.join(twice)})", list(first.values()))
    return cidrs


IPv4Address = Annotated[str, BeforeValidator(_ipv4_address)]
Cidr = Annotated[str, BeforeValidator(_cidr)]
CidrList = Annotated[list[Cidr], AfterValidator(_distinct_networks)]


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


def parsed_url(text: str, schemes: tuple[str, ...]):
    """urlsplit of an ASCII URL with one of `schemes`, a valid host and port; None when it is not one."""
    if not VISIBLE_ASCII.fullmatch(text):
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
    parts = parsed_url(text, ("http", "https"))
    if parts is None or parts.username is not None or parts.fragment:
        raise rule(message)
    if "'" in text:
        # A swarm service reads its settings from an env file that quotes each value in single quotes.
        raise rule(f"{message}, and without a single quote (write it %27)", text.replace("'", "%27"))
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
