"""EngineApplier: `pulumi up` (and `refresh`, `destroy`) of an offline Evaluation on real Docker engines.

Per resource, in dependency order: a resource not in the state is created; one in the state is diffed by
its provider against the state the provider read back after its last create, update or refresh (not
against the previous inputs), and then left alone, updated, or replaced: create-first, or delete-first
when the provider asks for it (containers), when the program named the resource itself, or when the
program says deleteBeforeReplace; a delete-first replacement first deletes the dependents whose inputs
from it, made unknown, would replace them (a dependsOn alone does not). A replaced resource Pulumi
named is named anew, so the program is evaluated again with that name (`rename`) before anything
changes. Resources no longer declared are deleted at the end, dependents first; replaced ones
too. Protected resources are never replaced or deleted (refused before anything changes); retained ones
leave the state but stay on the engine.

A failed update is recorded the way the bridge records it (partial failure: the new inputs and the
planned state), so the next plan diffs against what the provider believes, not what runs; `refresh=True`
(Pulumi.yaml `options: refresh: always`) reads every resource back first.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

import docker

from carecircle.offline import DeclaredResource, Evaluation

from .client import DOCKER_PROVIDERS, Context, go_map_order
from .diff import changed_paths
from .errors import EngineApplyError, ProtectedResourceError, UnsupportedResourceError
from .kinds import KINDS, Kind, kind_of
from .plan import (
    Resolver,
    change_of,
    declared_inputs,
    delete_first,
    deletion_order,
    dependents_replaced,
    ordered,
    plan,
    process_ignore_changes,
)
from .records import ApplyResult, Live

NO_OP_PROVIDERS = ("pulumi:providers:command", "pulumi:providers:random")
# Packages whose resources are real: an unknown type from one of them is refused, never skipped.
PROVIDER_PACKAGES = ("docker", "command", "random", "pulumi")


def _is_component(resource: DeclaredResource) -> bool:
    return resource.type.split(":", 1)[0] not in PROVIDER_PACKAGES and not resource.inputs


class EngineApplier:
    """Applies evaluations to Docker engines. `default_host` is the default provider's docker:host (for
    resources whose provider is ""), `default_registry_auth` its docker:registryAuth; resources of an
    explicit docker provider go to that provider's host with its credentials."""

    def __init__(self, default_host: str, *, default_registry_auth: Optional[list[dict]] = None, delete_timeout: float = 30.0,
                 poll_interval: float = 0.5, command_timeout: float = 600.0, update_status_grace: float = 7.0,
                 map_order: Callable[[list[str]], list[str]] = go_map_order):
        self.ctx = Context(default_host=default_host, default_registry_auth=list(default_registry_auth or []),
                           delete_timeout=delete_timeout, poll_interval=poll_interval, command_timeout=command_timeout,
                           update_status_grace=update_status_grace, map_order=map_order)
        self._superseded: list[Live] = []  # replaced (create-first) or removed, not yet deleted
        self._retained: list[Live] = []  # dropped from state with retain_on_delete; destroy() purges
        self._seq = 0
        self.history: list[ApplyResult] = []

    @property
    def default_host(self) -> str:
        return self.ctx.default_host

    @default_host.setter
    def default_host(self, host: str) -> None:
        self.ctx.default_host = host

    # ---- public API -------------------------------------------------------------------------

    def apply(self, evaluation: Evaluation, *, refresh: bool = False, replace: Iterable[str] = (),
              rename: Optional[Callable[[list[str]], Evaluation]] = None, target: Optional[Iterable[str]] = None) -> ApplyResult:
        """`pulumi up` (with `--refresh`, `--replace <urn or name>`); returns what happened. `rename`: the
        program evaluated again with these logical names named anew (see _renamed); without it, such a
        plan is refused. `target` (urns): `pulumi up --target`, only these are created, changed or deleted;
        every other resource stays as it is, created or not."""
        result = self._start()
        resources = ordered(evaluation.resources)
        self._validate(resources)
        self._delete_pending()
        if refresh:
            self._refresh()
        targets = set(replace)
        for _ in range(len(resources)):
            renamed = self._renamed(resources, targets)
            if not renamed:
                break
            if rename is None:
                raise EngineApplyError(f"the plan replaces {renamed}, which the engine names anew: "
                                       "evaluate the stack with renamed=... (offline.py) or pass rename=")
            resources = ordered(rename(renamed).resources)
            self._validate(resources)
        plan(resources, self.ctx.live, targets)  # refuses a protected replacement before anything changes
        done_early: set[str] = set()  # replaced delete-first with a dependency: created when reached
        registered: set[str] = set()  # what the program registered so far in this run
        chosen = None if target is None else set(target)
        for resource in resources:
            registered.add(resource.urn)
            kind = self._kind(resource)
            if kind is None or (chosen is not None and resource.urn not in chosen):
                continue
            old = self.ctx.live.get(resource.urn)
            if resource.urn in done_early or old is None:
                self._create(resource, kind, replacement=resource.urn in done_early)
                if resource.urn not in done_early:
                    result.created.append(resource.name)
                continue
            inputs = self._inputs(resource)
            action, paths, planned = change_of(resource, old, inputs, targets)
            if paths:
                result.changed[resource.name] = paths
            recorded = process_ignore_changes(inputs, old.inputs, () if resource.urn in targets else resource.ignore_changes)
            if action == "same":
                old.declared, old.inputs = resource, recorded
                result.unchanged.append(resource.name)
            elif action == "no live change":
                old.declared, old.inputs, old.state = resource, recorded, planned
                result.no_live_change.append(resource.name)
            elif action == "update":
                self._update(old, resource, kind, recorded, planned)
            elif action == "replace":
                self._replace(old, resource, kind, registered, done_early)
            else:
                raise EngineApplyError(f"{resource.type} {resource.name!r}: unexpected action {action!r}")
        declared = {r.urn for r in resources}
        removed = [live for urn, live in self.ctx.live.items() if urn not in declared and (chosen is None or urn in chosen)]
        for live in removed:
            del self.ctx.live[live.urn]
            self._superseded.append(live)
        self._delete_pending(removed={live.urn for live in removed})
        return result

    def preview(self, evaluation: Evaluation, *, refresh: bool = False, replace: Iterable[str] = ()) -> dict[str, tuple[str, list[str]]]:
        """`pulumi preview`: name -> (action, changed paths), nothing changed (a refresh only reads)."""
        self._start()
        resources = ordered(evaluation.resources)
        self._validate(resources)
        if refresh:
            self._refresh()
        steps = plan(resources, self.ctx.live, set(replace))
        return {r.name: (steps[r.urn].action, list(steps[r.urn].paths)) for r in resources if kind_of(r.type) is not None}

    def refresh(self) -> ApplyResult:
        """`pulumi refresh`: read every resource back into the state."""
        result = self._start()
        self._refresh()
        return result

    def validate(self, evaluation: Evaluation) -> None:
        """What apply() checks before touching an engine: every type supported, every input mapped, the
        provider's schema conflicts. Raises like apply() would; contacts no engine."""
        self._validate(ordered(evaluation.resources))

    def destroy(self, *, honor_protect: bool = False) -> ApplyResult:
        """Remove everything the applier created, dependents first. By default this is a teardown:
        protected and retained resources go too. With honor_protect=True it is `pulumi destroy`:
        protected resources raise and retained ones stay on the engine."""
        result = self._start()
        everything = [*deletion_order(list(self._superseded)), *deletion_order(list(self.ctx.live.values())),
                      *([] if honor_protect else deletion_order(list(self._retained)))]
        if honor_protect:
            protected = [live.name for live in everything if live.declared.protect]
            if protected:
                raise ProtectedResourceError(f"resources {protected} are protected: pulumi destroy refuses to delete them")
        errors = []
        for live in everything:
            try:
                if honor_protect and live.declared.retain_on_delete:
                    self._retained.append(live)
                else:
                    self._delete_live(live)
                result.deleted.append(live.name)
                result.steps.append(("delete", live.name))
            except Exception as error:  # teardown goes on, the first error is raised
                errors.append(error)
            self.ctx.live.pop(live.urn, None)
        self._superseded.clear()
        if not honor_protect:
            self._retained.clear()
        if errors:
            raise errors[0]
        return result

    def live(self, type_: str, name: str) -> Live:
        for live in self.ctx.live.values():
            if live.type == type_ and live.name == name:
                return live
        raise KeyError(f"no live {type_} named {name!r}")

    def real_id(self, name: str) -> str:
        ids = {live.id for live in self.ctx.live.values() if live.name == name and live.id and (kind_of(live.type) or KINDS[live.type]).on_engine}
        if len(ids) != 1:
            raise KeyError(f"{len(ids)} live resources named {name!r}")
        return ids.pop()

    def client(self, host: Optional[str] = None) -> docker.DockerClient:
        return self.ctx.client(host)

    def close(self) -> None:
        self.ctx.close()

    # ---- steps ----------------------------------------------------------------------------

    def _start(self) -> ApplyResult:
        self.ctx.result = ApplyResult()
        self.history.append(self.ctx.result)
        return self.ctx.result

    def _kind(self, resource: DeclaredResource) -> Optional[Kind]:
        kind = kind_of(resource.type)
        if kind is not None:
            return kind
        if resource.type in NO_OP_PROVIDERS or _is_component(resource):
            return None
        raise UnsupportedResourceError(f"{resource.type} {resource.name!r}: engine_apply does not support this resource type")

    def _validate(self, resources: list[DeclaredResource]) -> None:
        providers = {r.urn for r in resources if r.type in DOCKER_PROVIDERS} | {
            live.urn for live in self.ctx.live.values() if live.type in DOCKER_PROVIDERS}
        for resource in resources:
            kind = self._kind(resource)
            if kind is None:
                continue
            kind.validate(resource)
            if resource.provider and resource.type.startswith("docker:"):
                if resource.provider.rsplit("::", 1)[0] not in providers:
                    raise EngineApplyError(f"{resource.type} {resource.name!r}: unknown provider {resource.provider!r}")

    def _renamed(self, resources: list[DeclaredResource], targets: set[str]) -> list[str]:
        """The autonamed resources the plan replaces while the program still gives them their current name.
        The engine names a replacement anew (pulumi/pulumi pkg/resource/deploy/step_generator.go
        continueStepsFromDiff runs Check again without the old inputs) and the program then sees the new
        name, which its dependents may take: the program must be evaluated again."""
        steps = plan(resources, self.ctx.live, targets)
        return [r.name for r in resources if r.autoname and steps[r.urn].action == "replace"
                and self.ctx.live[r.urn].state.get("name") == r.autoname]

    def _host_of(self, resource: DeclaredResource) -> Optional[str]:
        if not resource.type.startswith("docker:"):
            return None
        if not resource.provider:
            return self.ctx.default_host
        provider = self.ctx.live.get(resource.provider.rsplit("::", 1)[0])
        if provider is None:
            raise EngineApplyError(f"{resource.name}: provider {resource.provider} was not applied")
        return provider.state.get("host") or self.ctx.default_host

    def _inputs(self, resource: DeclaredResource) -> dict:
        return declared_inputs(resource, Resolver(self.ctx.live))

    def _create(self, resource: DeclaredResource, kind: Kind, replacement: bool = False) -> Live:
        inputs = self._inputs(resource)
        self._seq += 1
        live = Live(declared=resource, inputs=inputs, state={}, id=None, host=self._host_of(resource), seq=self._seq)
        planned = kind.initial(inputs)
        live.state = planned  # what a partial create leaves recorded
        kind.create(self.ctx, live, planned)
        if kind.on_engine:
            self._record_read(live, kind, planned)
        self.ctx.live[resource.urn] = live
        self.ctx.result.steps.append(("create-replacement" if replacement else "create", resource.name))
        return live

    def _record_read(self, live: Live, kind: Kind, planned: dict) -> None:
        """The state after a create or update: the planned state with what the provider's Read sets."""
        live.state = planned
        time.sleep(kind.read_delay)
        read = kind.read(self.ctx, live)
        if read is not None:
            live.state = {**planned, **read}

    def _update(self, old: Live, resource: DeclaredResource, kind: Kind, recorded: dict, planned: dict) -> None:
        try:
            kind.update(self.ctx, old, planned)
        except Exception:
            if kind.on_engine:
                # Partial failure: the bridge returns the planned state with the error, and the engine
                # records it with the new inputs (the live object may run something else).
                old.declared, old.inputs, old.state = resource, recorded, planned
            raise
        old.declared, old.inputs = resource, recorded
        if kind.on_engine and kind.reads_after_update:
            self._record_read(old, kind, planned)
        elif kind.on_engine:
            old.state = planned
        self.ctx.result.updated.append(resource.name)
        self.ctx.result.steps.append(("update", resource.name))

    def _replace(self, old: Live, resource: DeclaredResource, kind: Kind, registered: set[str], done_early: set[str]) -> None:
        if old.declared.protect:
            raise ProtectedResourceError(f"unable to replace resource {resource.urn!r} as it is currently marked for protection")
        if resource.type in DOCKER_PROVIDERS:
            raise EngineApplyError(f"provider {resource.name!r} changed: engine_apply does not move resources between engines")
        first = delete_first(resource)
        if first:
            for victim in deletion_order(dependents_replaced(old, self.ctx.live, registered)):
                self._delete_live(victim)
                del self.ctx.live[victim.urn]
                self.ctx.result.steps.append(("delete-replaced", victim.name))
                self.ctx.result.replaced.append(victim.name)
                done_early.add(victim.urn)
            self._delete_live(old)
            del self.ctx.live[old.urn]
            self.ctx.result.steps.append(("delete-replaced", old.name))
        else:
            del self.ctx.live[old.urn]
            self._superseded.append(old)
        try:
            self._create(resource, kind, replacement=True)
        except Exception:
            if not first and resource.urn not in self.ctx.live:  # the old one is still the live one
                self._superseded.remove(old)
                self.ctx.live[old.urn] = old
            raise
        self.ctx.result.replaced.append(resource.name)

    def _refresh(self) -> None:
        """Read every resource back. Pulumi refreshes in parallel: the reads' first-look delays overlap, so
        they are waited once."""
        entries = [(live, kind_of(live.type)) for live in list(self.ctx.live.values())]
        entries = [(live, kind) for live, kind in entries if kind is not None and kind.on_engine and live.id]
        time.sleep(max((kind.read_delay for _, kind in entries), default=0))
        for live, kind in entries:
            read = kind.read(self.ctx, live)
            if read is None:  # gone: Pulumi drops it from the state, and the next plan creates it
                del self.ctx.live[live.urn]
                self.ctx.result.refreshed[live.name] = ["(deleted)"]
                continue
            refreshed = {**live.state, **read}
            paths = changed_paths(kind.schema, live.state, refreshed)
            if paths:
                self.ctx.result.refreshed[live.name] = paths
            live.state = refreshed

    def _delete_pending(self, removed: frozenset[str] | set[str] = frozenset()) -> None:
        for live in deletion_order(list(self._superseded)):
            if live.declared.protect:
                raise ProtectedResourceError(f"unable to delete resource {live.urn!r} as it is currently marked for protection")
            if live.declared.retain_on_delete:
                self._retained.append(live)
            else:
                self._delete_live(live)
            self._superseded.remove(live)
            if live.urn in removed:
                self.ctx.result.deleted.append(live.name)
                self.ctx.result.steps.append(("delete", live.name))
            else:
                self.ctx.result.steps.append(("delete-replaced", live.name))

    def _delete_live(self, live: Live) -> None:
        kind = kind_of(live.type)
        if kind is not None:
            kind.delete(self.ctx, live)

