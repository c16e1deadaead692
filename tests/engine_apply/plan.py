"""The plan of a deployment, as the Pulumi engine makes it (pulumi/pulumi pkg/resource/deploy/step_generator.go):
the order of the steps, what each resource's provider says of its change, which replacements go delete
first, and the refusals that come before anything changes (a protected resource replaced or deleted).

Mock ids are "<logical or generated name>-id" tokens inside input strings; `Resolver` turns them into the
real ids of what the applier created, or into UNKNOWN for a resource about to be replaced (its new id
does not exist yet: the engine asks the provider what the dependent's diff would be with that output
unknown, pkg/resource/deploy/step_generator.go calculateDependentReplacements).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from carecircle.offline import DeclaredResource

from .diff import UNKNOWN
from .errors import EngineApplyError, ProtectedResourceError
from .kinds import AUTONAMED, kind_of
from .records import Live


@dataclass(frozen=True)
class Step:
    action: str  # create | same | update | no live change | replace
    paths: tuple[str, ...] = ()
    delete_first: bool = False


def token(live: Live) -> str:
    """The name a mock id of this resource carries."""
    return live.declared.autoname or live.name


class Resolver:
    def __init__(self, live: Mapping[str, Live]):
        self.ids: dict[str, list[Live]] = {}
        for entry in live.values():
            kind = kind_of(entry.type)
            if entry.id and kind is not None and kind.on_engine:
                self.ids.setdefault(token(entry), []).append(entry)

    def _pattern(self, names: Iterable[str]) -> re.Pattern:
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return re.compile(r"(?<![A-Za-z0-9_.-])(" + alternatives + r")-id(?![A-Za-z0-9_.-])")

    def resolve(self, value: Any, unknown: Iterable[str] = (), unknown_values: Iterable[str] = ()) -> Any:
        """Inputs with every mock id replaced by the real id, or by UNKNOWN for the names in `unknown`
        (and any string equal to one of `unknown_values`: an output such as a name, taken as is)."""
        unknown, unknown_values = set(unknown), set(unknown_values)
        names = set(self.ids) | unknown
        if not names and not unknown_values:
            return value
        pattern = self._pattern(names) if names else None

        def real(match: re.Match) -> str:
            name = match.group(1)
            if name in unknown:
                return UNKNOWN
            candidates = self.ids[name]
            if len(candidates) > 1:
                raise EngineApplyError(f"mock id {match.group(0)!r} is ambiguous: {[(c.type, c.name) for c in candidates]}")
            return candidates[0].id or match.group(0)

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                return UNKNOWN if v in unknown_values else pattern.sub(real, v) if pattern else v
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return v

        return walk(value)


def references(value: Any, names: Iterable[str]) -> bool:
    text = json.dumps(value, sort_keys=True, default=str)
    return any(re.search(r"(?<![A-Za-z0-9_.-])" + re.escape(n) + r"-id(?![A-Za-z0-9_.-])", text) for n in names)


def declared_inputs(resource: DeclaredResource, resolver: Resolver, unknown: Iterable[str] = (),
                    unknown_values: Iterable[str] = ()) -> dict:
    """The inputs as the provider gets them: references resolved, and the name Pulumi generated
    (autonaming) when the program gave none."""
    inputs = resolver.resolve(resource.inputs, unknown, unknown_values)
    if resource.autoname and "name" not in inputs:
        inputs = {**inputs, "name": resource.autoname}
    return inputs


def process_ignore_changes(inputs: dict, old_inputs: dict, paths: Iterable[str]) -> dict:
    """processIgnoreChanges: each ignored path takes its previous input's value (or is left out when
    there was none)."""
    out = copy.deepcopy(inputs)
    for path in paths:
        *parents, last = path.split(".")
        source: Any = old_inputs
        target: Any = out
        for part in parents:
            source = source.get(part) if isinstance(source, dict) else None
            target = target.setdefault(part, {}) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if isinstance(source, dict) and last in source:
            target[last] = copy.deepcopy(source[last])
        else:
            target.pop(last, None)
    return out


def delete_first(resource: DeclaredResource) -> bool:
    """Replaced delete-first: asked for, the provider's choice (containers), or a name the program set."""
    kind = kind_of(resource.type)
    named = resource.type in AUTONAMED and not resource.autoname and "name" in resource.inputs
    return bool(resource.delete_before_replace or (kind is not None and kind.delete_before_replace) or named)


def targeted(resource: DeclaredResource, targets: Iterable[str]) -> bool:
    return resource.urn in targets or resource.name in targets


def change_of(resource: DeclaredResource, old: Live, inputs: dict, targets: Iterable[str]) -> tuple[str, list[str], dict]:
    """(action, changed paths, planned state) for a resource in the state. A `--replace` target takes
    its inputs as declared (no ignore_changes: the old state is not consulted)."""
    kind = kind_of(resource.type)
    assert kind is not None
    if targeted(resource, targets):
        return "replace", ["(--replace)"], kind.initial(inputs)
    inputs = process_ignore_changes(inputs, old.inputs, resource.ignore_changes)
    change = kind.plan(old, inputs, resource.ignore_changes)
    if old.tainted:
        return "replace", change.paths or ["(tainted)"], kind.initial(inputs)
    return change.action, change.paths, change.planned


def plan(resources: list[DeclaredResource], live: Mapping[str, Live], targets: Iterable[str]) -> dict[str, Step]:
    """What `pulumi preview` would say, before anything changes. Refuses to replace or delete a
    protected resource."""
    steps: dict[str, Step] = {}
    replacing: set[str] = set()
    replaced_names_by: dict[str, str] = {}  # urn -> `name` output of what is replaced: unknown to dependents
    by_urn = {r.urn: r for r in resources}
    resolver = Resolver(live)
    targets = set(targets)
    for resource in resources:
        old = live.get(resource.urn)
        if kind_of(resource.type) is None:
            steps[resource.urn] = Step("same")
            continue
        if old is None:
            steps[resource.urn] = Step("create")
            continue
        depends = _depends_on(resource, by_urn, live)
        inputs = declared_inputs(resource, resolver, unknown=replacing,
                                 unknown_values={n for urn, n in replaced_names_by.items() if urn in depends})
        action, paths, _ = change_of(resource, old, inputs, targets)
        steps[resource.urn] = Step(action, tuple(paths), delete_first(resource) and action == "replace")
        if action == "replace":
            if old.declared.protect:
                raise ProtectedResourceError(
                    f"unable to replace resource {resource.urn!r} ({paths}) as it is currently marked for protection")
            replacing.add(token(old))
            if isinstance(old.state.get("name"), str):
                replaced_names_by[resource.urn] = old.state["name"]
    current = {r.urn for r in resources}
    for entry in live.values():
        if entry.urn not in current and entry.declared.protect:
            raise ProtectedResourceError(f"unable to delete resource {entry.urn!r} as it is currently marked for protection")
    return steps


def _depends_on(resource: DeclaredResource, by_urn: Mapping[str, DeclaredResource], live: Mapping[str, Live]) -> set[str]:
    """Every urn `resource` depends on, directly or through others (dependencies, parent, provider)."""
    seen: set[str] = set()
    todo = [resource]
    while todo:
        current = todo.pop()
        direct = set(current.dependencies) | ({current.parent} if current.parent else set())
        if current.provider:
            direct.add(current.provider.rsplit("::", 1)[0])
        for urn in direct - seen:
            seen.add(urn)
            other = by_urn.get(urn) or (live[urn].declared if urn in live else None)
            if other is not None:
                todo.append(other)
    return seen


def dependents_replaced(root: Live, live: Mapping[str, Live], registered: set[str]) -> list[Live]:
    """What a delete-first replacement of `root` takes with it, deleted before it (pulumi/pulumi
    pkg/resource/deploy/step_generator.go calculateDependentReplacements): of the last state's resources
    that depend on `root` (pkg/resource/graph/dependency_graph.go DependingOn: dependencies, property
    dependencies, providers; not children) and were not registered yet in this run, those whose provider
    is replaced, or whose provider says replace when every input that took an output of a replaced
    resource is unknown (old inputs against the old state). A dependsOn edge alone replaces nothing."""
    replace_set = {root.urn}
    dependent_set = {root.urn}
    taken: list[Live] = []
    for entry in sorted(live.values(), key=lambda e: e.seq):
        declared = entry.declared
        provider = declared.provider.rsplit("::", 1)[0] if declared.provider else ""
        edges = {*declared.dependencies, *(u for urns in declared.property_dependencies.values() for u in urns), provider}
        if entry.urn in dependent_set or entry.urn in registered or not edges & dependent_set:
            continue
        dependent_set.add(entry.urn)
        kind = kind_of(entry.type)
        if kind is None:  # a component: never replaced
            continue
        if provider in replace_set:
            replaced = True
        else:
            unknown = {key for key, urns in declared.property_dependencies.items() if set(urns) & replace_set}
            inputs = {key: UNKNOWN if key in unknown else value for key, value in entry.inputs.items()}
            replaced = bool(unknown) and kind.plan(entry, inputs, declared.ignore_changes).action == "replace"
        if replaced:
            replace_set.add(entry.urn)
            taken.append(entry)
    return taken


def ordered(resources: list[DeclaredResource]) -> list[DeclaredResource]:
    """Dependencies, parents and providers first; otherwise declaration order."""
    by_urn = {r.urn: r for r in resources}
    index = {r.urn: i for i, r in enumerate(resources)}

    def deps(r: DeclaredResource) -> set[str]:
        out = set(r.dependencies) | ({r.parent} if r.parent else set())
        if r.provider:
            out.add(r.provider.rsplit("::", 1)[0])
        return {d for d in out if d in by_urn and d != r.urn}

    result: list[DeclaredResource] = []
    placed: set[str] = set()
    pending = sorted(resources, key=lambda r: index[r.urn])
    while pending:
        ready = [r for r in pending if deps(r) <= placed]
        if not ready:
            raise EngineApplyError(f"dependency cycle among {[r.name for r in pending]}")
        first = ready[0]
        result.append(first)
        placed.add(first.urn)
        pending.remove(first)
    return result


def deletion_order(entries: list[Live]) -> list[Live]:
    """Dependents before what they depend on (the state's dependencies, parents and providers), newest
    first among independent ones. Creation order alone is not enough: a resource replaced after its
    dependents were created is newer than they are."""
    by_urn: dict[str, list[Live]] = {}
    for entry in entries:
        by_urn.setdefault(entry.urn, []).append(entry)

    def needs(entry: Live) -> list[Live]:
        d = entry.declared
        urns = set(d.dependencies) | ({d.parent} if d.parent else set())
        if d.provider:
            urns.add(d.provider.rsplit("::", 1)[0])
        return [other for urn in urns if urn != entry.urn for other in by_urn.get(urn, [])]

    dependents: dict[int, int] = {id(e): 0 for e in entries}
    for entry in entries:
        for dependency in needs(entry):
            dependents[id(dependency)] += 1
    result: list[Live] = []
    pending = sorted(entries, key=lambda e: e.seq, reverse=True)
    while pending:
        ready = [e for e in pending if dependents[id(e)] == 0] or pending[:1]  # a cycle: newest first
        entry = ready[0]
        result.append(entry)
        pending.remove(entry)
        for dependency in needs(entry):
            dependents[id(dependency)] -= 1
    return result
