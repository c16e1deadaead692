"""How a kind's inputs become an Engine API request, and the provider schema facts its diff needs.

A kind's `fields` table maps every input it accepts (a dotted camelCase path, as the engine and the
mocks see them) to a target in the request body; a target starting with "@" is a parameter the applier
itself uses (a query parameter, a header, something done after the create call). An input path that
is in no table is refused (UnmappedInputError, naming resource, type and path): a new input can never
be silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from .errors import UnmappedInputError
from .values import SKIP, anything


@dataclass(frozen=True)
class To:
    """Map one input to `target`, a dotted path into the request body."""

    target: str
    convert: Callable[[Any], Any] = anything
    weak: bool = False  # only when the target is still unset (a network's name vs its id)
    append: bool = False  # extend a list target (generic resources)


@dataclass(frozen=True)
class Each:
    """A list of objects, each mapped with its own table (paths relative to the element)."""

    fields: Mapping[str, Any]
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def to(target: str, convert: Any = anything, *, weak: bool = False, append: bool = False) -> To:
    return To(target, convert, weak, append)


def each(fields: Mapping[str, Any], defaults: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Each:
    return Each(fields, defaults or {})


@dataclass(frozen=True)
class Schema:
    """A kind's inputs and the provider schema facts (kreuzwerker resource_docker_*.go) its diff uses.
    Paths are dotted input paths; list elements share their list's path ("secrets.fileName")."""

    fields: Mapping[str, To]
    # Schema defaults, by the path of the object they apply in ("" for the top level): applied when
    # that object is in the inputs.
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # ForceNew: a change at or below one of these paths replaces the resource.
    force_new: frozenset[str] = frozenset()
    # Optional + Computed: absent from the inputs, the state's value stays (no diff).
    computed: frozenset[str] = frozenset()
    # TypeSet: compared without order.
    unordered: frozenset[str] = frozenset()
    # DiffSuppressFunc: (state value, planned value) -> equivalent.
    equivalent: Mapping[str, Callable[[Any, Any], bool]] = field(default_factory=dict)
    # Values the provider reads back although the program sets none of them (Optional, not Computed):
    # a non-zero read-back value is a diff.
    read_only: frozenset[str] = frozenset()

    def replaces(self, path: str) -> bool:
        return any(path == p or path.startswith(p + ".") for p in self.force_new)


def mapped_paths(fields: Mapping[str, Any]) -> list[str]:
    """Every input path a table maps (list elements as "list[].field")."""

    def walk(table: Mapping[str, Any], prefix: str) -> Iterable[str]:
        for key, spec in table.items():
            if isinstance(spec.convert, Each):
                yield from walk(spec.convert.fields, f"{prefix}{key}[].")
            else:
                yield f"{prefix}{key}"

    return sorted(walk(fields, ""))


def _set(body: dict, dotted: str, value: Any, weak: bool = False, append: bool = False) -> None:
    *parents, last = dotted.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    if append:
        node.setdefault(last, []).extend(value)
    elif not (weak and last in node):
        node[last] = value


def with_defaults(inputs: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]], rel: str = "") -> dict:
    """The inputs with the schema defaults of every object present in them."""
    out = {**defaults.get(rel, {}), **{k: v for k, v in inputs.items() if v is not None}}
    for key, value in list(out.items()):
        path = f"{rel}.{key}" if rel else key
        if isinstance(value, dict):
            out[key] = with_defaults(value, defaults, path)
    return out


def mapped_only(fields: Mapping[str, Any], value: Mapping[str, Any], rel: str = "") -> dict:
    """The part of a planned state the table maps (schema defaults and read-back values the provider
    keeps but never sends are left out)."""
    out: dict = {}
    for key, item in value.items():
        path = f"{rel}.{key}" if rel else key
        spec = fields.get(path)
        if spec is not None:
            if isinstance(spec.convert, Each) and isinstance(item, list):
                item = [mapped_only(spec.convert.fields, element) if isinstance(element, dict) else element for element in item]
            out[key] = item
        elif isinstance(item, dict) and any(k.startswith(path + ".") for k in fields):
            out[key] = mapped_only(fields, item, path)
    return out


def map_inputs(resource: str, type_: str, schema: Schema, inputs: Mapping[str, Any]) -> tuple[dict, dict]:
    """(request body, applier parameters) for these inputs; refuses any input not in the table."""
    body: dict = {}
    params: dict = {}
    _walk(resource, type_, schema.fields, schema.defaults, inputs, "", "", body, params)
    return body, params


def _walk(resource: str, type_: str, table: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]],
          node: Mapping[str, Any], rel: str, shown: str, body: dict, params: dict) -> None:
    def known(key: str) -> bool:  # a schema default the request has no field for is not sent
        path = f"{rel}.{key}" if rel else key
        return path in table or any(k.startswith(path + ".") for k in table)

    values = {**{k: v for k, v in defaults.get(rel, {}).items() if known(k)}, **{k: v for k, v in node.items() if v is not None}}
    order = {key: index for index, key in enumerate(table)}

    def position(key: str) -> int:
        path = f"{rel}.{key}" if rel else key
        return min((i for k, i in order.items() if k == path or k.startswith(path + ".")), default=len(order))

    for key, value in sorted(values.items(), key=lambda item: position(item[0])):
        path = f"{rel}.{key}" if rel else key
        where = f"{shown}.{key}" if shown else key
        spec = table.get(path)
        if spec is not None:
            try:
                if isinstance(spec.convert, Each):
                    if not isinstance(value, list):
                        raise ValueError(f"expected a list, got {value!r}")
                    converted: Any = []
                    for index, item in enumerate(value):
                        if not isinstance(item, dict):
                            raise ValueError(f"expected objects in the list, got {item!r}")
                        element: dict = {}
                        _walk(resource, type_, spec.convert.fields, spec.convert.defaults, item, "",
                              f"{where}[{index}]", element, element)
                        converted.append(element)
                else:
                    converted = spec.convert(value)
            except ValueError as error:
                raise UnmappedInputError(resource, type_, where, f"has a value the provider rejects: {error}") from None
            if converted is SKIP:
                continue
            target = spec.target
            if target.startswith("@"):
                _set(params, target[1:], converted, spec.weak, spec.append)
            else:
                _set(body, target, converted, spec.weak, spec.append)
        elif any(k.startswith(path + ".") for k in table):
            if not isinstance(value, dict):
                raise UnmappedInputError(resource, type_, where, f"must be an object, got {value!r}")
            _walk(resource, type_, table, defaults, value, path, where, body, params)
        else:
            raise UnmappedInputError(resource, type_, where)
