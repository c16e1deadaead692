"""Image references and registry credentials the way the provider and the Docker Go client handle them.

- References (distribution/reference, as vendored by the Docker client): ParseNormalizedNamed,
  TagNameOnly, FamiliarString, WithDigest.
- The provider's registry_auth (provider.go providerSetToRegistryAuth): one AuthConfig per registry
  host, server address canonicalised to https://host (config.go canonicalizeRegistryAddress);
  fromRegistryAuth (resource_docker_service_funcs.go) picks the one of an image's host.
- Service create (docker client service_create.go ServiceCreate with QueryRegistry): the image gets
  a tag (`:latest` when it has none), then the manager's /distribution endpoint is asked for its
  digest and platforms with the same X-Registry-Auth: the image is pinned `name:tag@digest` (unless
  it already has a digest) and the spec's Placement.Platforms replaced by the registry's list. When
  the registry cannot be asked, the client only warns.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from .values import boolean, string

DEFAULT_DOMAIN = "docker.io"
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_PATH = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*)*")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def familiar_name(self) -> str:
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix("library/")
        return f"{self.domain}/{self.path}"

    def familiar(self) -> str:
        """FamiliarString: docker.io/ and library/ left out."""
        return self.familiar_name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_default_tag(self) -> Reference:
        """TagNameOnly: a name alone gets :latest; a tag or a digest is kept."""
        return self if self.tag or self.digest else Reference(self.domain, self.path, "latest")

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)


def parse_reference(image: str) -> Reference:
    """ParseNormalizedNamed; raises ValueError where the Docker client would."""
    name, _, digest = image.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise ValueError(f"invalid digest in {image!r}")
    slash = name.find("/")
    last_colon = name.rfind(":")
    tag = ""
    if last_colon > slash:
        name, tag = name[:last_colon], name[last_colon + 1:]
        if not _TAG.fullmatch(tag):
            raise ValueError(f"invalid tag in {image!r}")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not _PATH.fullmatch(path):
        raise ValueError(f"invalid reference format: {image!r} (repository names are lowercase)")
    return Reference(domain, path, tag, digest)


def tagged(image: str) -> str:
    """imageWithTagString: the image as the client sends it (a default tag added)."""
    try:
        return parse_reference(image).with_default_tag().familiar()
    except ValueError:
        return image


def pinned(image: str, digest: str) -> str:
    """imageWithDigestString: the digest added unless the reference already has one."""
    try:
        reference = parse_reference(image)
    except ValueError:
        return image
    return image if reference.digest else reference.with_digest(digest).familiar()


def digest_warning(image: str) -> str:
    """The client's warning when the registry cannot be asked (service_create.go digestWarning)."""
    return (f"image {image} could not be accessed on a registry to record\nits digest. Each node will access {image} "
            "independently,\npossibly leading to different nodes running different\nversions of the image.\n")


# -- credentials ------------------------------------------------------------------------------

REGISTRY_AUTH_KEYS = {"address": string, "username": string, "password": string, "authDisabled": boolean}


def registry_auth_entries(value: Any) -> list[dict]:
    """registry_auth as the engine hands a provider its inputs (JSON text) or as a list: the entries with
    the keys the applier knows (config files are not read)."""
    entries = json.loads(value) if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"expected a list of registry credentials, got {value!r}")
    for entry in entries:
        unknown = set(entry) - set(REGISTRY_AUTH_KEYS)
        if unknown or "address" not in entry:
            raise ValueError(f"a registry credential has keys {sorted(entry)}; engine_apply knows {sorted(REGISTRY_AUTH_KEYS)}")
        for key, check in REGISTRY_AUTH_KEYS.items():
            if key in entry:
                check(entry[key])
    return entries




def registry_host(address: str) -> str:
    """convertToHostname: scheme and path cut."""
    stripped = address.removeprefix("http://").removeprefix("https://")
    return stripped.split("/", 1)[0]


def auth_configs(registry_auth: Optional[list[Mapping[str, Any]]]) -> dict[str, dict[str, str]]:
    """The provider's AuthConfigs from its registry_auth input (username/password entries)."""
    configs: dict[str, dict[str, str]] = {}
    for entry in registry_auth or []:
        address = str(entry.get("address", ""))
        host = registry_host(address)
        username, password = entry.get("username") or "", entry.get("password") or ""
        if entry.get("authDisabled"):
            username, password = "username", "password"
        scheme = "http://" if address.startswith("http://") else "https://"
        configs[host] = {"username": username, "password": password, "serveraddress": scheme + host}
    return configs


def auth_for_image(image: str, configs: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """fromRegistryAuth: the credentials of the image's registry host, if the provider has them."""
    image = image.replace("http://", "", 1).replace("https://", "", 1)
    if "/" not in image:
        return {}
    server = image.split("/", 1)[0]
    if server in configs:
        return dict(configs[server])
    if server in ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        for hub in ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
            if hub in configs:
                return dict(configs[hub])
    return {}


def encoded_auth(config: Mapping[str, str]) -> str:
    """json.Marshal(registry.AuthConfig) (omitempty fields) as base64url: the X-Registry-Auth header."""
    body = {k: config[k] for k in ("username", "password", "serveraddress") if config.get(k)}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def service_auth(auth: Optional[Mapping[str, Any]]) -> dict[str, str]:
    """authToServiceAuth: a service's own `auth`, used only with both username and password."""
    if not auth or not auth.get("username") or not auth.get("password"):
        return {}
    return {"username": auth["username"], "password": auth["password"], "serveraddress": auth.get("serverAddress", "")}
