"""Read Pulumi.yaml + Pulumi.<stack>.yaml exactly as the Pulumi CLI hands config to a program.

What the CLI does (read in pulumi/pulumi @ 1b5949891b3c, v3.260.0-dev: sdk/go/common/workspace/loaders.go
LoadProjectStackBytes / LoadProjectBytes, sdk/go/common/resource/config/{object,value,map}.go,
pkg/workspace/config.go mergeConfig; YAML by gopkg.in/yaml.v3 v3.0.1 resolve.go / decode.go):
  * both files are decoded with gopkg.in/yaml.v3 v3.0.1 into `any`, re-encoded to YAML and decoded
    again (workspace.LoadProjectStackBytes / LoadProjectBytes). yaml.v3 resolves plain scalars with
    a YAML-1.2-ish table that keeps 1.1 octals: `010` is 8, `yes`/`on`/`y` are strings, `True` is a
    bool, `2024-01-01` is a timestamp; duplicate mapping keys are an error.
  * each stack value becomes a string (config.object.MarshalString): strings as they are, numbers and
    bools as Go JSON, null as "", timestamps as Go's time.String(), lists/maps as Go JSON (sorted
    keys, compact, <>& escaped, whole floats without ".0"), `{secure: ...}` as a secret.
  * project values fill keys the stack file lacks (pkg/workspace/config.go mergeConfig); typed keys are
    validated; the language host gets map[string]string + the secret keys (PULUMI_CONFIG).

This module reproduces that with PyYAML (SafeLoader subclass; PyYAML shares libyaml's grammar, only
the resolver/constructors are replaced). tests/test_cli_yaml.py checks it against a table and against
golden outputs of a Go harness that ran the CLI's own YAML, JSON and schema libraries. Not reproduced:
ESC `environment:`, config keys that are property paths (`a.b`, `a[0]`), tags on collections beyond
"ignored", the CLI's local time zone (timestamps with an offset).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Optional

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode


class CliConfigError(ValueError):
    """The CLI would refuse these files (message mirrors the CLI's where known)."""


class YamlTypeError(CliConfigError):
    """yaml.v3's *TypeError (duplicate keys): the CLI passes it on without a prefix."""


INT64 = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1


# ----------------------------------------------------------------------------- Go number formatting
def _digits(f: float) -> tuple[str, int]:
    """Shortest round-trip digits and decimal-point position (value = 0.DIGITS * 10**dp)."""
    sign, digits, exp = Decimal(repr(abs(f))).normalize().as_tuple()
    d = "".join(map(str, digits))
    return d, len(d) + exp


def _fixed(d: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + d
    return d + "0" * (dp - len(d)) if dp >= len(d) else d[:dp] + "." + d[dp:]


def _exp(d: str, dp: int) -> str:
    e = dp - 1
    return (d[0] + ("." + d[1:] if len(d) > 1 else "")) + ("e-" if e < 0 else "e+") + f"{abs(e):02d}"


def go_g(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64): what yaml.v3 writes for a float (and fmt %v)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    d, dp = _digits(f)
    s = _exp(d, dp) if dp - 1 < -4 or dp - 1 >= 6 else _fixed(d, dp)
    return ("-" if f < 0 else "") + s


def go_json_float(f: float) -> str:
    """encoding/json for a float64."""
    if math.isnan(f) or math.isinf(f):
        raise CliConfigError(f"json: unsupported value: {go_g(f)}")
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    d, dp = _digits(f)
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        s = re.sub(r"e-0(\d)$", r"e-\1", _exp(d, dp))
    else:
        s = _fixed(d, dp)
    return ("-" if f < 0 else "") + s


# ----------------------------------------------------------------------------- yaml.v3 timestamps
@dataclass(frozen=True)
class GoTime:
    """A yaml.v3 timestamp (time.Time). offset None = UTC (a +00:00 offset ends up UTC too)."""

    y: int
    mo: int
    d: int
    h: int = 0
    mi: int = 0
    s: int = 0
    ns: int = 0
    offset: Optional[int] = None  # minutes east of UTC

    def _frac(self) -> str:
        return ("." + f"{self.ns:09d}".rstrip("0")) if self.ns else ""

    def go_string(self) -> str:  # time.Time.String(), as config.unmarshalObject stores it
        base = f"{self.y:04d}-{self.mo:02d}-{self.d:02d} {self.h:02d}:{self.mi:02d}:{self.s:02d}{self._frac()}"
        if self.offset is None:
            return base + " +0000 UTC"
        # UNCERTAIN: the CLI prints the zone name instead if its local zone has this offset then.
        z = f"{'-' if self.offset < 0 else '+'}{abs(self.offset) // 60:02d}{abs(self.offset) % 60:02d}"
        return f"{base} {z} {z}"

    def rfc3339(self) -> str:  # json.Marshal(time.Time) (project values) / yaml.v3 encoding
        z = "Z"
        if self.offset is not None:
            z = f"{'-' if self.offset < 0 else '+'}{abs(self.offset) // 60:02d}:{abs(self.offset) % 60:02d}"
        return f"{self.y:04d}-{self.mo:02d}-{self.d:02d}T{self.h:02d}:{self.mi:02d}:{self.s:02d}{self._frac()}{z}"


_D = r"([0-9]{4})-([0-9][0-9]?)-([0-9][0-9]?)"
_T = r"([0-9][0-9]?):([0-9][0-9]?):([0-9][0-9]?)(?:[.,]([0-9]+))?"
_TS = [  # yaml.v3 allowedTimestampFormats, as Go's time.Parse reads them
    re.compile(_D + r"[Tt]" + _T + r"(Z|[+-][0-9][0-9]:[0-9][0-9])"),
    re.compile(_D + " " + _T),
    re.compile(_D),
]


def parse_timestamp(s: str) -> Optional[GoTime]:
    for rx in _TS:
        m = rx.fullmatch(s)
        if not m:
            continue
        y, mo, d = (int(x) for x in m.groups()[:3])
        h, mi, sec, frac, zone = (list(m.groups()[3:]) + [None] * 5)[:5]
        h, mi, sec = int(h or 0), int(mi or 0), int(sec or 0)
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        if not (1 <= mo <= 12 and 1 <= d <= days[mo - 1] and h < 24 and mi < 60 and sec < 60):
            return None
        ns = int(((frac or "") + "000000000")[:9])
        off = None
        if zone and zone != "Z":
            if int(zone[1:3]) > 24 or int(zone[4:6]) > 60:
                return None
            off = (int(zone[1:3]) * 60 + int(zone[4:6])) * (-1 if zone[0] == "-" else 1)
        return GoTime(y, mo, d, h, mi, sec, ns, off or None)
    return None


# ----------------------------------------------------------------------------- yaml.v3 resolve()
_NAMED = {
    **{k: None for k in ("", "~", "null", "Null", "NULL")},
    **{k: True for k in ("true", "True", "TRUE")},
    **{k: False for k in ("false", "False", "FALSE")},
    **{k: math.nan for k in (".nan", ".NaN", ".NAN")},
    **{k: math.inf for k in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{k: -math.inf for k in ("-.inf", "-.Inf", "-.INF")},
}
_GO_INT0 = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)")
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")  # yamlStyleFloat
_DOT_FLOAT = re.compile(r"\.[0-9](?:_?[0-9])*(?:[eE][-+]?[0-9](?:_?[0-9])*)?")  # strconv.ParseFloat, leading '.'


def _parse_int(s: str, base: int = 0, signed: bool = True) -> Optional[int]:
    """strconv.ParseInt (signed) / ParseUint; base 0 = Go prefixes incl. 0777 octal."""
    if base == 0:
        m = _GO_INT0.fullmatch(s)
        if not m:
            return None
        sign, body = m.groups()
        prefix = body[1:2].lower()
        if prefix in ("x", "b", "o"):
            v = int(body[2:], {"x": 16, "b": 2, "o": 8}[prefix])
        else:
            v = int(body, 8 if body.startswith("0") else 10)  # "010" is octal 8
    else:
        m = re.fullmatch(r"([+-]?)([0-9a-zA-Z]+)", s)
        if not m or any(int(c, 36) >= base for c in m[2]):
            return None
        sign, v = m[1], int(m[2], base)
    if sign and not signed:
        return None
    v = -v if sign == "-" else v
    ok = INT64[0] <= v <= INT64[1] if signed else 0 <= v <= UINT64_MAX
    return v if ok else None


def _finite(s: str) -> Optional[float]:
    f = float(s)
    return None if math.isinf(f) else f  # ParseFloat reports overflow as an error


def resolve_plain(s: str) -> Any:
    """yaml.v3 resolve("", s) for an untagged plain scalar."""
    if s in _NAMED:
        return _NAMED[s]
    if s.startswith("."):
        f = _finite(s.replace("_", "")) if _DOT_FLOAT.fullmatch(s) else None
        return s if f is None else f
    if not s or s[0] not in "+-0123456789":
        return s
    ts = parse_timestamp(s)
    if ts:
        return ts
    plain = s.replace("_", "")
    for signed in (True, False):
        v = _parse_int(plain, 0, signed)
        if v is not None:
            return v
    if _YAML_FLOAT.fullmatch(plain) and _finite(plain) is not None:
        return float(plain)
    for prefix, base in (("0b", 2), ("-0b", 2), ("0o", 8), ("-0o", 8)):
        if plain.startswith(prefix):
            rest = plain[len(prefix):]
            rest = "-" + rest if prefix[0] == "-" else rest
            v = _parse_int(rest, base)
            v = _parse_int(rest, base, signed=False) if v is None and prefix[0] != "-" else v
            if v is not None:
                return v
            break
    return s


def resolve_tagged(tag: str, s: str) -> Any:
    """yaml.v3 resolve(tag, s) for an explicit !!bool/!!int/!!float/!!null/!!timestamp."""
    v = parse_timestamp(s) if tag == "timestamp" else resolve_plain(s)
    v = s if v is None and tag == "timestamp" or isinstance(v, GoTime) and tag != "timestamp" else v
    got = {bool: "bool", int: "int", float: "float", type(None): "null", GoTime: "timestamp", str: "str"}[type(v)]
    if got == tag:
        return v
    if tag == "float" and got == "int":
        return float(v)
    raise CliConfigError(f"yaml: cannot decode !!{got} `{s}` as a !!{tag}")


class GoKey(str):
    """A non-string mapping key, already spelled as Go's fmt %v prints it."""


def _go_key(k: Any) -> GoKey:
    if k is None:
        return GoKey("<nil>")
    if isinstance(k, bool):
        return GoKey("true" if k else "false")
    if isinstance(k, float):
        k = resolve_plain(go_g(k))  # after the YAML round trip 3.0 is the int 3
    return GoKey(k.go_string() if isinstance(k, GoTime) else go_g(k) if isinstance(k, float) else str(k))


# ----------------------------------------------------------------------------- the loader
_PLAIN, _MERGE = "tag:pulumi-cli:plain", "tag:yaml.org,2002:merge"


MAX_DEPTH = 100
MAX_EXPANDED_NODES = 100_000


class CliYamlLoader(yaml.SafeLoader):
    """PyYAML SafeLoader with yaml.v3's scalar resolution and duplicate-key errors."""

    yaml_implicit_resolvers: dict = {}
    depth = 0

    def compose_node(self, parent, index):
        # Composing, constructing and re-encoding recurse once per level: a bounded depth gives a clear
        # error where a deeply nested value would raise RecursionError. (yaml.v3 stops at 10000 levels;
        # no config value nests more than two.)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise CliConfigError(f"a value is nested more than {MAX_DEPTH} levels deep (at line {self.peek_event().start_mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode and implicit[0]:
            return _MERGE if value == "<<" else _PLAIN
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for k, _ in node.value:  # yaml.v3 decoder.mapping: same node kind and text = duplicate
            ident = (type(k), k.value if isinstance(k, ScalarNode) else "")
            if ident in seen:
                raise YamlTypeError(
                    "yaml: unmarshal errors:\n  line %d: mapping key %s already defined at line %d"
                    % (k.start_mark.line + 1, json.dumps(ident[1], ensure_ascii=False), seen[ident]))
            seen[ident] = k.start_mark.line + 1
        self.flatten_mapping(node)
        out = {}
        for k_node, v_node in node.value:
            key = self.construct_object(k_node, deep=deep)
            if isinstance(key, (list, dict)):
                raise CliConfigError(f"yaml: invalid map key: {key!r}")
            out[key if type(key) is str else _go_key(key)] = self.construct_object(v_node, deep=deep)
        return out

    def _any_tag(self, suffix, node):  # unknown/local tags: yaml.v3 ignores them
        if isinstance(node, MappingNode):
            return self.construct_mapping(node, deep=True)
        if isinstance(node, SequenceNode):
            return self.construct_sequence(node, deep=True)
        return node.value


CliYamlLoader.add_constructor(_PLAIN, lambda ld, n: resolve_plain(n.value))
CliYamlLoader.add_constructor(_MERGE, lambda ld, n: n.value)  # `<<` as a value is a string
for _t in ("bool", "int", "float", "null", "timestamp"):
    CliYamlLoader.add_constructor(f"tag:yaml.org,2002:{_t}", lambda ld, n, t=_t: resolve_tagged(t, n.value))
CliYamlLoader.add_constructor("tag:yaml.org,2002:binary",
                              lambda ld, n: base64.b64decode(n.value).decode(errors="replace"))
for _t in ("omap", "pairs", "set"):  # PyYAML extras that yaml.v3 does not know
    CliYamlLoader.add_constructor(f"tag:yaml.org,2002:{_t}", lambda ld, n: ld._any_tag("", n))
CliYamlLoader.add_multi_constructor("", CliYamlLoader._any_tag)


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """Nodes the document holds once every alias is expanded (each shared node counted once per use)."""
    if id(node) not in sizes:
        children = [n for pair in node.value for n in pair] if isinstance(node, MappingNode) else \
            node.value if isinstance(node, SequenceNode) else []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def load_yaml(text: str) -> Any:
    """yaml.v3 Unmarshal into `any`: the first document only; None for an empty file."""
    loader = CliYamlLoader(text.removeprefix("\ufeff"))
    try:
        if not loader.check_node():
            return None
        node = loader.get_node()
        # Aliases of aliases expand exponentially (yaml.v3 refuses "excessive aliasing" too).
        if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise CliConfigError(f"the document expands to more than {MAX_EXPANDED_NODES} values through its aliases")
        return loader.construct_document(node)
    except YamlTypeError:
        raise
    except (yaml.YAMLError, CliConfigError) as e:
        raise CliConfigError(f"invalid YAML file: {e}") from None
    finally:
        loader.dispose()


# ----------------------------------------------------------------------------- config values
@dataclass(frozen=True)
class Secure:
    ciphertext: str


@dataclass(frozen=True)
class StackValue:  # config.Value
    text: str
    secure: bool = False
    object: bool = False


def _json_str(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        out = out.replace(ch, esc)
    return out


def go_json(v: Any) -> str:
    """encoding/json.Marshal: compact, map keys sorted, HTML-escaped strings."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_json_float(v)
    if isinstance(v, str):
        return _json_str(v)
    if isinstance(v, Secure):
        return '{"secure":' + _json_str(v.ciphertext) + "}"
    if isinstance(v, GoTime):
        return _json_str(v.rfc3339())
    if isinstance(v, list):
        return "[" + ",".join(map(go_json, v)) + "]"
    return "{" + ",".join(_json_str(k) + ":" + go_json(v[k]) for k in sorted(v)) + "}"


def _to_object(v: Any) -> Any:
    """config.unmarshalObject after the YAML round trip."""
    if isinstance(v, float):
        v = resolve_plain(go_g(v)) if not (math.isnan(v) or math.isinf(v)) else v  # -0.0 -> 0
    if isinstance(v, GoTime):
        return v.go_string()
    if isinstance(v, list):
        return [_to_object(x) for x in v]
    if isinstance(v, dict):
        if len(v) == 1 and isinstance(v.get("secure"), str):
            return Secure(v["secure"])
        return {str(k): _to_object(x) for k, x in v.items()}
    return v


def _has_secure(v: Any) -> bool:
    if isinstance(v, dict):
        v = list(v.values())
    return isinstance(v, Secure) or (isinstance(v, list) and any(map(_has_secure, v)))


def stack_value(v: Any) -> StackValue:
    """config.object.MarshalString for one stack-file value."""
    if v is None:
        return StackValue("")  # yaml.v3 never calls UnmarshalYAML for null: zero Value
    o = _to_object(v)
    if isinstance(o, str):
        return StackValue(o)
    if isinstance(o, Secure):
        return StackValue(o.ciphertext, secure=True)
    if isinstance(o, (list, dict)):
        try:
            return StackValue(go_json(o), _has_secure(o), True)
        except CliConfigError as e:
            raise CliConfigError(f"json: error calling MarshalJSON for type config.object: {e}") from None
    return StackValue(go_json(o))


def program_text(v: StackValue, decrypt: Callable[[str], str]) -> str:
    """config.Map.Decrypt: the string the program receives."""
    if not v.object:
        return decrypt(v.text) if v.secure else v.text

    def num(s):  # json.Number: Int64() if it fits, else Float64()
        return int(s) if INT64[0] <= int(s) <= INT64[1] else float(s)

    def dec(o):
        if isinstance(o, dict):
            if len(o) == 1 and isinstance(o.get("secure"), str):
                return decrypt(o["secure"])
            return {k: dec(x) for k, x in o.items()}
        return [dec(x) for x in o] if isinstance(o, list) else o

    o = dec(json.loads(v.text, parse_int=num))
    return o if isinstance(o, str) else go_json(o)


def parse_key(k: str) -> str:
    """config.ParseKey: `ns:name`, or the old `ns:config:name`."""
    parts = k.split(":")
    if len(parts) == 2 or (len(parts) == 3 and parts[1] == "config"):
        return f"{parts[0]}:{parts[-1]}"
    raise CliConfigError(f"could not parse {k} as a configuration key "
                         "(configuration keys should be of the form `<namespace>:<name>`)")


def _dedupe(pairs, what: str) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:  # the CLI keeps one of them, chosen by Go's random map order
            raise CliConfigError(f"{what} '{k}' is given twice (the Pulumi CLI would pick one at random)")
        out[k] = v
    return out


def load_stack(text: str, project: str) -> tuple[dict[str, StackValue], list[str]]:
    """workspace.LoadProjectStackBytes: ({full key: value}, warnings)."""
    doc = load_yaml(text)
    if doc is None:
        return {}, []
    if not isinstance(doc, dict) or any(type(k) is not str for k in doc):
        raise CliConfigError(f"expected project to be an object, was '{type(doc).__name__}'")
    cfg = doc.get("config")
    if cfg is None:
        return {}, []
    if not isinstance(cfg, dict):
        kind = "!!seq" if isinstance(cfg, list) else f"scalar `{cfg}`"
        raise CliConfigError("invalid YAML file: could not unmarshal map: yaml: unmarshal errors:\n"
                             f"  cannot unmarshal {kind} into map[string]config.Value")
    warnings = [f"No value for configuration key {k}" for k, v in cfg.items() if v is None]
    try:
        for k in cfg:
            if type(k) is not str:  # then nothing is namespaced and ParseKey fails on this key
                parse_key(k)
        named = _dedupe(((k if ":" in k else f"{project}:{k}", v) for k, v in cfg.items()), "configuration key")
        values = _dedupe(((parse_key(k), stack_value(v)) for k, v in named.items()), "configuration key")
    except CliConfigError as e:
        raise CliConfigError(f"invalid YAML file: could not unmarshal map: {e}") from None
    return values, warnings


# ----------------------------------------------------------------------------- Pulumi.yaml
_DECL_KEYS = {"type", "items", "description", "secret", "default", "value"}
_TYPES = {"string", "integer", "boolean", "array", "object"}


def _is_go_int(v: Any) -> bool:  # yaml.v3 decodes int64-range integers as Go `int`
    return type(v) is int and INT64[0] <= v <= INT64[1]


def _schema_check(key: str, v: Any) -> None:
    """project.json: config values are string | integer | boolean | array | ConfigTypeDeclaration."""
    where = f"could not validate 'Pulumi.yaml': #/config/{key}"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        raise CliConfigError(f"{where}: the Pulumi CLI crashes on this value (nil *big.Rat in jsonschema)")
    if isinstance(v, GoTime) or (type(v) is int and not _is_go_int(v)):
        raise CliConfigError(f"could not validate 'Pulumi.yaml': jsonschema: invalid jsonType: "
                             f"{'time.Time' if isinstance(v, GoTime) else 'uint64'}")
    if key == "secret" and not isinstance(v, bool):  # a `secret` property is declared at config level
        raise CliConfigError(f"{where}: expected boolean")
    ok = isinstance(v, (str, bool, list)) or type(v) is int or (isinstance(v, float) and v.is_integer())
    if isinstance(v, dict):
        t = v.get("type")
        ok = (set(v) <= _DECL_KEYS and (t is None or t in _TYPES) and isinstance(v.get("description", ""), str)
              and isinstance(v.get("secret", False), bool) and (v.get("items") is None or isinstance(v["items"], dict)))
    if not ok:
        raise CliConfigError(f"{where}: oneOf failed")


def validate_value(typ: str, items: Optional[dict], v: Any) -> bool:
    """workspace.ValidateConfigValue."""
    if typ == "string":
        return isinstance(v, str)
    if typ == "integer":
        if isinstance(v, bool):
            return False
        if isinstance(v, (int, float)):
            return float(v).is_integer()
        return isinstance(v, str) and re.fullmatch(r"[+-]?[0-9]+", v) is not None and INT64[0] <= int(v) <= INT64[1]
    if typ == "boolean":
        return isinstance(v, bool) or v in ("true", "false")
    if typ == "object":
        return isinstance(v, dict)
    return isinstance(v, list) and items is not None and all(
        validate_value(items.get("type"), items.get("items"), x) for x in v)


def _type_name(t: str, items: Optional[dict]) -> str:  # workspace.InferFullTypeName
    return f"array<{_type_name(items.get('type'), items.get('items'))}>" if items else t


def load_project(text: str) -> tuple[str, dict[str, dict]]:
    """workspace.LoadProjectBytes + Project.Validate: (name, {raw key: declaration})."""
    try:
        doc = load_yaml(text)
    except CliConfigError as e:
        raise CliConfigError(f"could not unmarshal 'Pulumi.yaml': {e}") from None
    if not isinstance(doc, dict) or any(type(k) is not str for k in doc):
        raise CliConfigError("could not validate 'Pulumi.yaml': expected project to be an object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise CliConfigError("could not validate 'Pulumi.yaml': project is missing a non-empty string 'name' attribute")
    cfg = doc.get("config")
    if cfg is None or isinstance(cfg, str):  # a string is the deprecated stackConfigDir
        return name, {}
    if not isinstance(cfg, dict):
        raise CliConfigError("could not validate 'Pulumi.yaml': #/config: expected object or string or null")
    decls = {}
    for key, v in cfg.items():
        _schema_check(key, v)
        own = ":" not in key or key.startswith(name + ":")
        if isinstance(v, float):  # passes the schema as "integer", but is not rewritten (RewriteShorthandConfigValues)
            kind = type(resolve_plain(go_g(v))).__name__
            raise CliConfigError(f"yaml: unmarshal errors:\n  cannot unmarshal !!{kind} `{go_g(v)}` "
                                 "into workspace.ProjectConfigType")
        d = dict(v) if isinstance(v, dict) else {"default" if own else "value": v}
        for f in ("default", "value"):  # the re-encode turns whole floats below 1e6 into ints
            if isinstance(d.get(f), float) and not (math.isnan(d[f]) or math.isinf(d[f])):
                d[f] = resolve_plain(go_g(d[f]))
        t = d.get("type")
        if d.get("default") is not None and d.get("value") is not None:
            raise CliConfigError(f"project config '{key}' cannot have both a 'default' and 'value' attribute")
        if own:
            if t == "array" and d.get("items") is None:
                raise CliConfigError(f"The configuration key '{key}' declares an array but does not specify "
                                     "the underlying type via the 'items' attribute")
            if t and d.get("default") is not None and not validate_value(t, d.get("items"), d["default"]):
                raise CliConfigError(f"The default value specified for configuration key '{key}' "
                                     f"is not of the expected type '{_type_name(t, d.get('items'))}'")
        elif t:
            raise CliConfigError(f"Configuration key '{key}' is not namespaced by the project "
                                 "and should not define a type")
        elif d.get("default") is not None:
            raise CliConfigError(f"Configuration key '{key}' is not namespaced by the project and should not define a "
                                 "default value. Did you mean to use the 'value' attribute instead of 'default'?")
        elif d.get("value") is None:
            raise CliConfigError(f"Configuration key '{key}' is namespaced and must provide an attribute 'value'")
        decls[key] = d
    return name, decls


def project_value(raw: Any) -> StackValue:
    """pkg/workspace/config.go createConfigValue."""
    if isinstance(raw, str) or isinstance(raw, bool) or _is_go_int(raw):
        return StackValue(raw if isinstance(raw, str) else go_json(raw))
    return StackValue(go_json(raw), False, True)


# ----------------------------------------------------------------------------- what the program gets
def program_config(project_text: str, stack_text: str, stack: str,
                   decrypt: Callable[[str, str], str] = lambda key, ct: ct) -> tuple[dict[str, str], set[str], list[str]]:
    """(PULUMI_CONFIG as a dict, PULUMI_CONFIG_SECRET_KEYS, warnings) for `pulumi up` on `stack`.

    `decrypt(key, ciphertext)` gives the plaintext of a `secure:` value (the CLI uses the stack's
    secrets provider; the offline tools fake it by key).
    """
    name, decls = load_project(project_text)
    values, warnings = load_stack(stack_text, name)
    missing, typed = [], []
    for key in sorted(decls):  # mergeConfig: a stack value replaces the project value whole
        d = decls[key]
        if re.search(r"[.\[\]\"]", key.split(":")[-1]):
            raise CliConfigError(f"project key '{key}' is a property path: not reproduced by this prototype")
        full = parse_key(key) if ":" in key else f"{name}:{key}"
        raw = d.get("default") if d.get("default") is not None else d.get("value")
        if full not in values:
            if raw is not None:
                values[full] = project_value(raw)
            elif full.split(":")[0] == name:
                missing.append(key)
                continue
        if d.get("type"):
            typed.append((key, full, d))
    if missing:
        quoted = [f"'{k}'" for k in sorted(missing)]
        listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
        raise CliConfigError(f"validating stack config: Stack '{stack}' is missing configuration "
                             f"value{'s' if len(missing) > 1 else ''} {listed}")
    for key, full, d in typed:  # validateStackConfigValue
        v = values[full]
        if d.get("secret") and not v.secure:
            raise CliConfigError(f"validating stack config: Stack '{stack}' with configuration key '{key}' "
                                 "must be encrypted as it's secret")
        text = program_text(v, lambda ct, key=full: decrypt(key, ct))
        if not validate_value(d["type"], d.get("items"), json.loads(text) if v.object else text):
            raise CliConfigError(f"validating stack config: Stack '{stack}' with configuration key '{key}' "
                                 f"must be of type '{_type_name(d['type'], d.get('items'))}'")
    config = {k: program_text(v, lambda ct, key=k: decrypt(key, ct)) for k, v in values.items()}
    return config, {k for k, v in values.items() if v.secure}, warnings


def config_set_path_value(text: str) -> Any:
    """`pulumi config set --path k.x VALUE` (config.coerce): "true"/"false" -> bool, base-10 ints
    without a leading 0 -> int, everything else a string. Top-level `config set k VALUE` stores a string."""
    if text in ("true", "false"):
        return text == "true"
    if len(text) > 1 and text[0] == "0":
        return text
    for signed in (True, False):  # strconv.ParseInt, then ParseUint
        v = _parse_int(text, 10, signed)
        if v is not None:
            return v
    return text
