"""What every settings section shares: how a key is declared, and how a rule that spans several
keys is written.

A section is a pydantic model of flat keys (`carecircle:<camelCase>`). A value's own rules live in
its type (settings/types.py); a rule that needs several keys is a method marked `@cross_rule` on
the section that owns the key it reports, reading any key of the composed Settings through `self`.
Cross rules run even when other keys are invalid: a rule that touches an invalid key is skipped
(its key's own problem is already reported), so one pass reports every problem it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .secret_types import SecretKind
from .types import STRICT_ENVIRONMENTS


class Section(BaseModel):
    """A group of flat config keys; the composed Settings inherits every section."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid", frozen=True)

    @classmethod
    def cross_rules(cls) -> list[Callable[..., Iterable["Violation"]]]:
        return [member for member in vars(cls).values() if getattr(member, "is_cross_rule", False)]


def key(description: str, example: Any = None, **kwargs: Any) -> Any:
    """A config key: its description and the example a fix command suggests."""
    return Field(description=description, json_schema_extra={"example": example} if example is not None else None, **kwargs)


@dataclass(frozen=True)
class Violation:
    """A cross-key rule broken, reported on one field (python name)."""

    field: str
    message: str
    fix: Any = None  # the value to suggest; "" means remove the key; None: the field's example
    path: str = ""


@dataclass(frozen=True)
class Environment:
    """Which environment the stack is (bound to its name, see settings/loading.py)."""

    name: str

    @property
    def strict(self) -> Optional[str]:
        """The name when staging/prod rules apply, else None."""
        return self.name if self.name in STRICT_ENVIRONMENTS else None


def cross_rule(method: Callable[[Any, Environment], Iterator[Violation]]) -> Callable[[Any, Environment], Iterator[Violation]]:
    method.is_cross_rule = True  # type: ignore[attr-defined]
    return method


class SkipRule(Exception):
    """A rule read a key that is invalid: its own problem is reported already."""


class Invalid:
    """Stands in for an invalid key while cross rules run: any use of it skips the rule."""

    def _skip(self, *args: Any, **kwargs: Any) -> Any:
        raise SkipRule

    __getattr__ = __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _skip
    __iter__ = __len__ = __contains__ = __getitem__ = __str__ = __int__ = __float__ = __hash__ = _skip
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __format__ = _skip
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _skip


INVALID = Invalid()


def _members(annotation: Any) -> tuple[Any, ...]:
    origin = get_origin(annotation)
    if origin is Union:
        return tuple(m for arg in get_args(annotation) for m in _members(arg))
    return (annotation,)


def is_structured(field: Any) -> bool:
    """Lists reach the program as JSON text, like every structured value the CLI passes."""
    return any(get_origin(member) is list for member in _members(field.annotation))


def secret_kind(field: Any) -> Optional[SecretKind]:
    """The SecretKind of a secret key (see types.secret), else None."""
    for meta in field.metadata:
        if isinstance(meta, SecretKind):
            return meta
    for member in _members(field.annotation):
        for meta in getattr(member, "__metadata__", ()):
            if isinstance(meta, SecretKind):
                return meta
    return None
