"""docker.Service (kreuzwerker resource_docker_service.go, _funcs.go, _structures.go).

Create and update send the whole spec createServiceSpec builds: every block of task_spec is there even
when empty (Healthcheck {}, DNSConfig {}, StopGracePeriod 0, Init false, ...), and the env map becomes
the task's list by ranging over a Go map (mapTypeMapValsToStringSlice): a new order on every call, and
Swarm compares task specs order included. Both send X-Registry-Auth (the service's `auth`, else the
provider's registry_auth for the image's host). Create goes through the Docker client with QueryRegistry
(registry.py says what that rewrites). `convergeConfig` makes create and update wait (create deletes a
service that never converges; update fails on rollback or pause). Read flattens the spec back: every
duration through shortDur ("120s" is read as "2m"), env as a map, labels and secrets as sets.
"""

from __future__ import annotations

import json
import time
from typing import Optional

import docker.errors

from carecircle.offline import DeclaredResource

from ..client import Context
from ..errors import ConvergeError, EngineError, UnmappedInputError
from ..records import Live
from ..registry import auth_configs, auth_for_image, digest_warning, encoded_auth, pinned, service_auth, tagged
from ..values import parse_duration
from .base import Kind
from .service_converge import converge as wait_for_convergence
from .service_fields import SCHEMA
from .service_readback import flatten_service

READ_DELAY = 2.0  # the Read's StateChangeConf Delay

class Service(Kind):
    type = "docker:index/service:Service"
    schema = SCHEMA
    read_delay = READ_DELAY

    def validate(self, resource: DeclaredResource) -> None:
        super().validate(resource)
        inputs = resource.inputs
        if inputs.get("convergeConfig") is not None and (inputs.get("mode") or {}).get("global"):
            raise UnmappedInputError(resource.name, resource.type, "convergeConfig",
                                     "conflicts with mode.global (the provider's schema: ConflictsWith)")
        action = (inputs.get("rollbackConfig") or {}).get("failureAction")
        if action is not None and action not in ("pause", "continue"):  # validateStringMatchesPattern("(pause|continue)")
            raise UnmappedInputError(resource.name, resource.type, "rollbackConfig.failureAction",
                                     f"has a value the provider rejects: {action!r} (pause or continue)")

    # -- the spec createServiceSpec sends ----------------------------------------------------------

    def spec(self, ctx: Context, live: Live, planned: dict) -> tuple[dict, dict]:
        body, params = self.body(live, planned)
        task = body.setdefault("TaskTemplate", {})
        container = task.setdefault("ContainerSpec", {})
        env = params.get("env") or {}
        if env:
            container["Env"] = ctx.map_order([f"{k}={v}" for k, v in env.items() if k])
        # Blocks the provider always sends, empty when not declared (a raw map holds every key).
        for key, empty in (("Healthcheck", {}), ("DNSConfig", {}), ("StopGracePeriod", 0), ("Init", False)):
            container.setdefault(key, empty)
        for key in ("Resources", "RestartPolicy", "Placement"):
            task.setdefault(key, {})
        body.setdefault("Mode", {})
        body.setdefault("EndpointSpec", {})
        return body, params

    def _auth(self, ctx: Context, live: Live, image: str, params: dict) -> dict[str, str]:
        """retrieveAndMarshalAuth: the service's auth, else the provider's for the image's registry."""
        own = service_auth(params.get("auth"))
        return own if params.get("auth") else auth_for_image(image, auth_configs(ctx.registry_auth(live)))

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        spec, params = self.spec(ctx, live, planned)
        container = spec["TaskTemplate"]["ContainerSpec"]
        container["Image"] = tagged(container.get("Image", ""))
        auth = self._auth(ctx, live, container["Image"], params)
        header = {"X-Registry-Auth": encoded_auth(auth)}
        self._query_registry(ctx, live, spec, header)
        created = ctx.call(live, "POST", "/services/create", body=spec, headers=header, what="create service")
        live.id = created["ID"]
        for warning in [created.get("Warning")] + list(created.get("Warnings") or []):
            if warning:
                ctx.warn(live, warning)
        converge = params.get("converge")
        if converge:
            try:
                wait_for_convergence(ctx, live, converge, since=None)
            except ConvergeError:
                self.delete(ctx, live)  # "the service will be deleted in case it cannot be converged"
                live.id = None
                raise

    def _query_registry(self, ctx: Context, live: Live, spec: dict, header: dict) -> None:
        """resolveContainerSpecImage: the manager asks the registry for the digest and platforms."""
        container = spec["TaskTemplate"]["ContainerSpec"]
        image = container["Image"]
        try:
            answer = ctx.call(live, "GET", "/distribution/{0}/json", image, headers=header, what="distribution inspect")
        except EngineError:
            ctx.warn(live, digest_warning(image))
            return
        container["Image"] = pinned(image, answer["Descriptor"]["digest"])
        platforms = [{"Architecture": "" if (p.get("architecture") or "").lower() == "arm" else p.get("architecture", ""),
                      "OS": p.get("os", "")} for p in answer.get("Platforms") or []]
        if platforms:
            spec["TaskTemplate"].setdefault("Placement", {})["Platforms"] = platforms

    def update(self, ctx: Context, live: Live, planned: dict) -> None:
        before = ctx.call(live, "GET", "/services/{0}", live.id or "", what="inspect service")
        spec, params = self.spec(ctx, live, planned)
        container = spec["TaskTemplate"]["ContainerSpec"]
        container["Image"] = tagged(container.get("Image", ""))  # ServiceUpdate tags too, without asking the registry
        auth = self._auth(ctx, live, container["Image"], params)
        started = time.time()
        response = ctx.call(live, "POST", "/services/{0}/update", live.id or "", body=spec,
                            params={"version": before["Version"]["Index"]}, headers={"X-Registry-Auth": encoded_auth(auth)},
                            what="update service")
        for warning in (response or {}).get("Warnings") or []:
            ctx.warn(live, warning)
        converge = params.get("converge")
        if converge:
            after = ctx.call(live, "GET", "/services/{0}", live.id or "", what="inspect service")
            rollout = any(json.dumps(before["Spec"].get(k), sort_keys=True) != json.dumps(after["Spec"].get(k), sort_keys=True) for k in ("TaskTemplate", "EndpointSpec"))
            wait_for_convergence(ctx, live, converge, since=started if rollout else None)

    # -- Read ------------------------------------------------------------------------------------

    def read(self, ctx: Context, live: Live) -> Optional[dict]:
        # resourceDockerServiceReadRefreshFunc under a StateChangeConf (first look after read_delay), until the
        # endpoint spec is exposed, up to 30 s.
        deadline = time.monotonic() + 30
        while True:
            try:
                service = ctx.call(live, "GET", "/services/{0}", live.id or "", what="inspect service")
            except EngineError as error:
                if "not found" in error.explanation:
                    return None
                raise
            endpoint = (service.get("Endpoint") or {}).get("Spec") or {}
            if endpoint.get("Mode") or (service["Spec"].get("EndpointSpec") or {}).get("Mode"):
                break
            if time.monotonic() > deadline:
                raise EngineError(f"{live.type} {live.name!r}: service {live.id} never exposed its endpoint spec")
            time.sleep(ctx.poll_interval)
        return flatten_service(service)

    # -- Delete ------------------------------------------------------------------------------------

    def delete(self, ctx: Context, live: Live) -> None:
        """deleteService: with a stop_grace_period, wait for the task containers, then force-remove them."""
        grace = ((live.state.get("taskSpec") or {}).get("containerSpec") or {}).get("stopGracePeriod") or "0s"
        grace_seconds = parse_duration(grace) / 1e9 if grace != "0s" else 0
        api = ctx.client(ctx.engine_of(live)).api
        containers = []
        if grace_seconds:
            for task in api.tasks(filters={"service": live.id}):
                cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
                if cid and task["Status"].get("State") != "shutdown":
                    containers.append(cid)
        try:
            ctx.call(live, "DELETE", "/services/{0}", live.id or "", what="remove service")
        except EngineError as error:
            if "not found" not in error.explanation:
                raise
        for cid in containers:
            try:
                api.wait(cid, timeout=max(1, grace_seconds), condition="removed")
            except Exception:  # timeout or already gone, as the provider tolerates
                pass
            try:
                api.remove_container(cid, v=True, force=True)
            except docker.errors.APIError as error:
                if "No such container" not in str(error) and "already in progress" not in str(error):
                    raise
