"""The provider's diff: new inputs against the state the provider read back, as the Terraform plugin SDK
(under pulumi-terraform-bridge) computes it.

- planned state (schema.Resource.Diff / PlanResourceChange): an input's value wins; an input left out
  keeps the state's value when the schema says Optional + Computed, and otherwise plans the value's
  removal; schema defaults fill the objects present in the inputs.
- ignore_changes: the Pulumi engine first resets the ignored input paths to their previous inputs
  (pulumi/pulumi pkg/resource/deploy/step_generator.go processIgnoreChanges), then the bridge drops
  the attribute diffs under them (pulumi-terraform-bridge pkg/tfshim/sdk-v2/instance_diff.go
  processIgnoreChanges): an ignored path never differs and keeps the state's value.
- changed paths: empty, zero and absent are the same value (an Optional attribute); TypeSet values
  are compared without order; DiffSuppressFuncs say when two texts are the same value.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable, Mapping, Optional

from .mapping import Each, Schema

# An output not known until its resource is applied (the engine's Computed): a change wherever it stands,
# as the SDK diffs a computed attribute (NewComputed), replacing when the attribute is ForceNew.
UNKNOWN = "<unknown until applied>"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def is_ignored(path: str, ignored: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in ignored)


def with_defaults(schema: Schema, inputs: Mapping[str, Any]) -> dict:
    """The inputs with the schema defaults of every object (and list element) present in them."""

    def walk(node: Mapping[str, Any], table: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]], rel: str) -> dict:
        out = {**defaults.get(rel, {}), **{k: v for k, v in node.items() if v is not None}}
        for key, value in list(out.items()):
            path = _join(rel, key)
            spec = table.get(path)
            if spec is not None and isinstance(spec.convert, Each) and isinstance(value, list):
                out[key] = [walk(item, spec.convert.fields, spec.convert.defaults, "") if isinstance(item, dict) else item
                            for item in value]
            elif spec is None and isinstance(value, dict):
                out[key] = walk(value, table, defaults, path)
        return out

    return walk(inputs, schema.fields, schema.defaults, "")


def planned_state(schema: Schema, state: Mapping[str, Any], inputs: Mapping[str, Any], ignored: Iterable[str] = ()) -> dict:
    """What the provider will hold after the change: the inputs over the state, as described above."""
    ignored = list(ignored)

    def walk(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> dict:
        out = {}
        for key in list(old) + [k for k in new if k not in old]:
            p = _join(path, key)
            if is_ignored(p, ignored):
                if key in old:
                    out[key] = old[key]
            elif new.get(key) is not None:
                value, before = new[key], old.get(key)
                out[key] = walk(before, value, p) if isinstance(value, dict) and isinstance(before, dict) else value
            elif p in schema.computed and old.get(key) is not None:
                out[key] = old[key]
        return out

    return walk(state or {}, with_defaults(schema, inputs), "")


def _plain(value: Any) -> Any:
    """Numbers as the engine stores them (24.0 is 24); zero values as None; empty objects dropped."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict):
        value = {k: v for k, v in ((k, _plain(v)) for k, v in value.items()) if v is not None}
        return value or None
    if isinstance(value, list):
        value = [_plain(v) for v in value]
        return value or None
    if value in ("", 0, False) and not isinstance(value, float):
        return None
    return value


def _canonical(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _leaves(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(relative path, canonical value) of an object's leaves; lists are leaves."""
    if isinstance(value, dict) and value:
        return [leaf for key, item in value.items() for leaf in _leaves(item, _join(path, key))]
    return [(path, _canonical(value))]


def _element_changes(path: str, old: list, new: list) -> list[str]:
    """The fields whose values differ between two lists of objects compared as sets."""
    def by_field(items: list) -> dict[str, Counter]:
        fields: dict[str, Counter] = {}
        for item in items:
            for leaf, value in _leaves(item):
                fields.setdefault(leaf, Counter())[value] += 1
        for counter in fields.values():  # absent in some elements: the zero value there
            counter[_canonical(None)] += len(items) - sum(counter.values())
        return fields

    before, after = by_field(old), by_field(new)
    changed = sorted(_join(path, f) for f in set(before) | set(after)
                     if +before.get(f, Counter({_canonical(None): len(old)})) != +after.get(f, Counter({_canonical(None): len(new)})))
    return changed or [path]


def changed_paths(schema: Schema, state: Optional[Mapping[str, Any]], planned: Optional[Mapping[str, Any]], path: str = "") -> list[str]:
    """Dotted paths where the planned state differs from the state (list elements without index)."""
    old, new = state or {}, planned or {}
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        for p in _value_changes(schema, old.get(key), new.get(key), _join(path, key)):
            if p not in out:
                out.append(p)
    return out


def _value_changes(schema: Schema, old: Any, new: Any, path: str) -> list[str]:
    if isinstance(new, str) and new == UNKNOWN:
        return [path]
    if path in schema.equivalent:
        return [] if schema.equivalent[path](old, new) else [path]
    if _plain(old) is None and _plain(new) is None:
        return []
    if isinstance(old, dict) or isinstance(new, dict):
        if isinstance(old, (dict, type(None))) and isinstance(new, (dict, type(None))):
            return changed_paths(schema, old, new, path)
        return [path]
    if isinstance(old, list) or isinstance(new, list):
        old, new = old or [], new or []
        objects = all(isinstance(item, dict) for item in old + new)
        if path in schema.unordered:
            if Counter(map(_canonical, old)) == Counter(map(_canonical, new)):
                return []
            return _element_changes(path, old, new) if objects else [path]
        if objects and len(old) == len(new):
            out: list[str] = []
            for a, b in zip(old, new, strict=True):
                out += [p for p in changed_paths(schema, a, b, path) if p not in out]
            return out
        if _canonical(old) == _canonical(new):
            return []
        return _element_changes(path, old, new) if objects else [path]
    return [] if _canonical(old) == _canonical(new) else [path]
