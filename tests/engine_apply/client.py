"""The engines the applier talks to, and the one way it sends them requests (recorded in the result)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import docker
import docker.errors

from .errors import EngineApplyError, EngineError
from .records import ApiRequest, ApplyResult, Live
from .registry import registry_auth_entries

DOCKER_PROVIDERS = ("pulumi:providers:docker", "docker:index/provider:Provider")


def go_map_order(entries: list[str]) -> list[str]:
    """A Go map ranged over: a different order on each call (the runtime randomises iteration)."""
    shuffled = list(entries)
    random.shuffle(shuffled)
    return shuffled


@dataclass
class Context:
    """Connections, knobs and the current apply's record, shared by every kind."""

    default_host: str
    # The default provider's docker:registryAuth (the stack's config), as the provider input list.
    default_registry_auth: list[dict] = field(default_factory=list)
    delete_timeout: float = 30.0  # the provider retries network/volume removal for 30 s
    poll_interval: float = 0.5
    command_timeout: float = 600.0
    # The provider waits 7 s before its first look at an update; the applier instead waits up to this long
    # for the engine to report the rollout it started, then judges like the provider.
    update_status_grace: float = 7.0
    # How a Go map's entries come out when the provider ranges over one (a service's env).
    map_order: Callable[[list[str]], list[str]] = go_map_order
    result: ApplyResult = field(default_factory=ApplyResult)
    live: dict[str, Live] = field(default_factory=dict)  # urn -> the applier's state
    _clients: dict[str, docker.DockerClient] = field(default_factory=dict)

    def client(self, host: Optional[str] = None) -> docker.DockerClient:
        host = host or self.default_host
        if host not in self._clients:
            if not host.startswith(("unix://", "tcp://", "http://", "https://", "npipe://")):
                raise EngineApplyError(f"docker host {host!r}: engine_apply reaches only unix:// and tcp:// engines")
            try:
                self._clients[host] = docker.DockerClient(base_url=host, version="auto", timeout=300)
            except docker.errors.DockerException as error:
                raise EngineApplyError(f"cannot reach the docker engine at {host}: {error}") from error
        return self._clients[host]

    def hosts_connected(self) -> list[str]:
        return sorted(self._clients)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def engine_of(self, live: Live) -> str:
        """Where operations on a live resource go. The default provider follows docker:host: after it
        changes (say, to another manager of the same swarm) every default-provider resource is reached
        there, as with Pulumi's default provider."""
        return self.default_host if not live.declared.provider else (live.host or self.default_host)

    def provider_of(self, live: Live) -> Optional[Live]:
        if not live.declared.provider:
            return None
        return self.live.get(live.declared.provider.rsplit("::", 1)[0])

    def registry_auth(self, live: Live) -> list[dict]:
        """The registry_auth of the provider that manages `live`."""
        provider = self.provider_of(live)
        return registry_auth_entries(provider.state.get("registryAuth") or []) if provider else list(self.default_registry_auth)

    def warn(self, live: Live, message: str) -> None:
        self.result.warnings.append(f"{live.name}: {message}")

    def call(self, live: Live, method: str, path: str, *args: str, body: Any = None, params: Optional[dict] = None,
             headers: Optional[dict] = None, what: str = "") -> Any:
        api = self.client(self.engine_of(live)).api
        url = api._url(path, *args)
        shown = path.format(*args) if args else path
        self.result.requests.append(ApiRequest(live.host or "", method, shown, body, params, headers))
        try:
            if method == "POST":
                response = api._post_json(url, data=body if body is not None else {}, params=params, headers=dict(headers or {}))
            elif method == "GET":
                response = api._get(url, params=params, headers=dict(headers or {}))
            elif method == "DELETE":
                response = api._delete(url, params=params)
            else:
                raise ValueError(method)
            api._raise_for_status(response)
        except docker.errors.APIError as error:
            raise EngineError(f"{live.type} {live.name!r}: {what or method + ' ' + shown} failed: {error.explanation or error}",
                              str(error.explanation or error)) from error
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text
