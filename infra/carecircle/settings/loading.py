"""Loading a stack's config: what the Pulumi CLI hands the program, checked whole before anything
is declared.

Order: the stack's environment is bound to its name; every key must belong to a namespace the
program (or its providers) reads; secret keys must be stored as secrets; lists are JSON; then each
section validates its keys (types and their own rules), and every cross-key rule whose keys are
valid runs. Any problem: ConfigError listing all of them, nothing declared.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated, Any, Optional

from pydantic import TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from .base import INVALID, Environment, SkipRule, Violation, is_structured, secret_kind
from .errors import DOCKER_HOST_KEY, NAMESPACE, REGISTRY_AUTH_KEY, SSH_OPTS_KEY, ConfigError, ConfigProblem, fix_command, full_key, problem
from .gateway import Route
from .model import SECTIONS, Settings, all_cross_rules, stack_name_problem
from .secret_types import CERTIFICATE, PRIVATE_KEY

ENVIRONMENTS = ("dev", "staging", "prod")
# Stacks whose name does not start with their environment. An entry is a reviewed decision: add
# one only in a pull request that says why (e.g. a long-lived stack named before this rule).
STACK_ENVIRONMENT_EXCEPTIONS: dict[str, str] = {}
# Namespaces something reads: ours, the docker provider's (its own config keys), the engine's.
PROVIDER_NAMESPACE = "docker"
ENGINE_NAMESPACE = "pulumi"
# The longest value any key takes: a PEM certificate chain, else a list or a URL. Far below what a
# Swarm secret holds (docker_names.SWARM_SECRET_MAX_BYTES), and what the policy pack reads in bounded time.
MAX_PEM_LENGTH = 64 * 1024
MAX_VALUE_LENGTH = 32 * 1024


def environment_of_stack(stack: str) -> Optional[str]:
    """A stack's environment is its name's first word: `prod`, `prod-eu` → prod; `dev-alice` → dev."""
    if stack in STACK_ENVIRONMENT_EXCEPTIONS:
        return STACK_ENVIRONMENT_EXCEPTIONS[stack]
    head = stack.split("-", 1)[0]
    return head if head in ENVIRONMENTS else None


@lru_cache(maxsize=1)
def docker_provider_keys() -> frozenset[str]:
    """The docker provider's own config keys (docker:host, docker:sshOpts, ...)."""
    from pulumi_docker.config import vars as docker_config

    names = [name for name, member in vars(docker_config._ExportableConfig).items() if isinstance(member, property)]
    return frozenset(f"{PROVIDER_NAMESPACE}:{to_camel(name)}" for name in names)


FIELDS = {name: field for section in SECTIONS for name, field in section.model_fields.items() if name != "stack"}
FIELD_OF_ALIAS = {field.alias: name for name, field in FIELDS.items()}
SECRET_FIELDS = frozenset(name for name, field in FIELDS.items() if secret_kind(field) is not None)


def fake_template(key: str) -> str:
    """How the offline tools fake the `secure:` value of `key` (see types.SecretKind)."""
    field_name = FIELD_OF_ALIAS.get(key.removeprefix(f"{NAMESPACE}:"))
    kind = secret_kind(FIELDS[field_name]) if field_name else None
    return kind.fake if kind else "fake-{tag}{tag}"


def _example(field_name: str, path: str) -> Any:
    field = FIELDS[field_name]
    if path and field.alias == "gatewayRoutes":  # inside a route: the example of that route field
        route_field = Route.model_fields.get(next((n for n, f in Route.model_fields.items() if f.alias == path.rsplit(".", 1)[-1]), ""))
        if route_field is not None:
            extra = route_field.json_schema_extra if isinstance(route_field.json_schema_extra, dict) else {}
            return extra.get("example", "<value>")
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    example = extra.get("example", "<value>")
    element = re.fullmatch(r"\[[0-9]+\](?:\.(\w+))?", path)
    if element:  # one element of a list, or one field of it
        first = example[0] if isinstance(example, list) and example else "<value>"
        return first.get(element.group(1), "<value>") if element.group(1) and isinstance(first, dict) else first
    return example


def _fix(stack: str, field_name: str, fix: Any, path: str = "") -> str:
    field = FIELDS[field_name]
    return fix_command(stack, full_key(field.alias), _example(field_name, path) if fix is None else fix, path=path,
                       secret=field_name in SECRET_FIELDS, structured=is_structured(field))


def _from_pydantic(stack: str, error: dict[str, Any]) -> ConfigProblem:
    alias = str(error["loc"][0])
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"][1:])
    if error["type"] == "missing":
        message = "is not set"
    elif error["type"] == "extra_forbidden":
        return ConfigProblem(key=full_key(alias), path=path, message="is not a key this program reads here",
                             fix=fix_command(stack, full_key(alias), "", path=path))
    else:
        message = error["msg"][0].lower() + error["msg"][1:]
    return ConfigProblem(key=full_key(alias), path=path, message=message,
                         fix=_fix(stack, FIELD_OF_ALIAS[alias], (error.get("ctx") or {}).get("fix"), path))


def _decode_json(text: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate keys")
        return dict(pairs)

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a number")

    return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)


@lru_cache(maxsize=None)
def _adapter(field_name: str) -> TypeAdapter:
    field = FIELDS[field_name]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)]) if field.metadata else TypeAdapter(field.annotation)


def _screen(stack: str, values: dict[str, str], secret_keys: set[str]) -> tuple[dict[str, Any], set[str], list[ConfigProblem]]:
    """Keys by alias, ready to validate; the aliases whose value was refused on the way (too long, not
    JSON), which are then no "missing" key; and the problems found (namespaces, secrets, size, JSON)."""
    problems: list[ConfigProblem] = []
    data: dict[str, Any] = {}
    refused: set[str] = set()
    for key, value in sorted(values.items()):
        namespace, _, name = key.partition(":")
        if key in (DOCKER_HOST_KEY, REGISTRY_AUTH_KEY, SSH_OPTS_KEY):  # docker provider keys the program reads too
            alias = key
        elif namespace == NAMESPACE:
            alias = name
        elif namespace == ENGINE_NAMESPACE or key in docker_provider_keys():
            continue
        elif namespace == PROVIDER_NAMESPACE:
            problems.append(problem(stack, key, "is not a config key of the docker provider (a typo?)"))
            continue
        else:
            problems.append(problem(stack, key, f"nothing in this program reads the namespace '{namespace}' (a typo of '{NAMESPACE}'?)"))
            continue
        field_name = FIELD_OF_ALIAS.get(alias)
        if field_name is None:
            problems.append(problem(stack, full_key(alias), "is not a known key (a typo?)"))
            continue
        if field_name in SECRET_FIELDS and key not in secret_keys:
            problems.append(problem(stack, key, "holds a secret but is stored in plain text",
                                    f"pulumi config set --secret {key} <value> --stack {stack}"))
        limit = MAX_PEM_LENGTH if secret_kind(FIELDS[field_name]) in (CERTIFICATE, PRIVATE_KEY) else MAX_VALUE_LENGTH
        if isinstance(value, str) and len(value) > limit:
            problems.append(problem(stack, key, f"is {len(value)} characters long; no value of this key needs more than {limit}",
                                    _fix(stack, field_name, None)))
            refused.add(alias)
            continue
        if is_structured(FIELDS[field_name]) and isinstance(value, str):
            try:
                value = _decode_json(value)
            except RecursionError:
                problems.append(problem(stack, key, "is nested too deeply: a list of values (or of routes) is all it takes",
                                        _fix(stack, field_name, None)))
                refused.add(alias)
                continue
            except ValueError:
                problems.append(problem(stack, key, "must be a YAML/JSON list", _fix(stack, field_name, None)))
                refused.add(alias)
                continue
        data[alias] = value
    return data, refused, problems


def _validate_sections(stack: str, data: dict[str, Any], environment: Environment,
                       refused: set[str] = frozenset()) -> tuple[dict[str, Any], set[str], list[ConfigProblem]]:
    """Field values by name, the names of invalid fields, and their problems (a key `refused` while
    screening is invalid, not missing)."""
    context = {"environment": environment.name}
    values: dict[str, Any] = {}
    invalid: set[str] = set()
    problems: list[ConfigProblem] = []
    for section in SECTIONS:
        fields = {name: field for name, field in section.model_fields.items() if name != "stack"}
        subset = {field.alias: data[field.alias] for field in fields.values() if field.alias in data}
        try:
            values.update({name: getattr(section.model_validate(subset, context=context), name) for name in fields})
            continue
        except ValidationError as error:
            errors = error.errors(include_url=False)
        problems += [_from_pydantic(stack, e) for e in errors if not (e["type"] == "missing" and str(e["loc"][0]) in refused)]
        failed = {FIELD_OF_ALIAS[str(e["loc"][0])] for e in errors}
        invalid |= failed
        for name, field in fields.items():
            if name not in failed:
                given = field.alias in subset
                values[name] = _adapter(name).validate_python(subset[field.alias], context=context) if given else field.get_default()
    return values, invalid, problems


def parse_settings(stack: str, values: dict[str, str], secret_keys: set[str]) -> Settings:
    """Validate config as the CLI hands it over (every value text); raise ConfigError listing every problem."""
    bound = environment_of_stack(stack)
    problems: list[ConfigProblem] = []
    if bound is None:
        problems.append(ConfigProblem(
            key=f"{NAMESPACE}:environment", path="",
            message=f"stack '{stack}' does not say its environment: stack names start with dev, staging or prod "
                    "(e.g. prod-eu); checked here with the prod rules",
            fix=f"pulumi stack rename prod-{stack} (or add a reviewed exception in settings/loading.py)"))
    environment = Environment(bound or "prod")
    data, refused, screened = _screen(stack, values, secret_keys)
    problems += screened
    field_values, invalid, field_problems = _validate_sections(stack, data, environment, refused)
    problems += field_problems
    view = Settings.model_construct(**field_values, **{name: INVALID for name in invalid}, stack=stack)
    for cross_rule in all_cross_rules():
        try:
            violations: list[Violation] = list(cross_rule(view, environment))
        except SkipRule:
            continue
        problems += [ConfigProblem(key=full_key(FIELDS[v.field].alias), path=v.path, message=v.message,
                                   fix=_fix(stack, v.field, v.fix, v.path)) for v in violations]
    problems += _stack_name_problems(stack, view)
    if problems:
        raise ConfigError(stack, problems)
    return Settings.model_construct(**{**field_values, "environment": environment.name}, stack=stack)


def _stack_name_problems(stack: str, view: Settings) -> list[ConfigProblem]:
    """A stack name that makes a Docker name the engine refuses, whatever namePrefix (checked once the
    keys it depends on are valid)."""
    try:
        why = stack_name_problem(view)
    except SkipRule:
        return []
    if not why:
        return []
    renamed = re.sub(r"[^A-Za-z0-9-]+", "-", stack).strip("-")
    while len(renamed) > len(stack.split("-", 1)[0]) and stack_name_problem(view.model_copy(update={"stack": renamed})):
        renamed = renamed[:-1].rstrip("-")
    return [ConfigProblem(key="stack name", path="", message=f"'{stack}' makes Docker names the engine refuses, whatever "
                                                            f"namePrefix: {why.replace('c-' + stack, '<prefix>-' + stack)}",
                          fix=f"pulumi stack rename {renamed}")]


def read_stack_config() -> tuple[dict[str, str], set[str]]:
    """Every config value of this stack as the CLI hands it over, and which keys are secret."""
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return values, {key for key in values if runtime_config.is_config_secret(key)}


def load_settings() -> Settings:
    """Settings of the stack Pulumi is running, or ConfigError before anything is declared."""
    import pulumi

    values, secret_keys = read_stack_config()
    return parse_settings(pulumi.get_stack(), values, secret_keys)
