"""What every resource kind provides: its schema, its diff, and create / update / delete / read against
the engine the way its provider does them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Optional

from carecircle.offline import DeclaredResource

from ..client import Context
from ..diff import changed_paths, planned_state
from ..errors import EngineApplyError, EngineError
from ..mapping import Schema, map_inputs, mapped_only
from ..records import Live


@dataclass(frozen=True)
class Change:
    """The provider's answer to a diff: same, update, replace, or an update with no live effect."""

    action: str  # same | update | replace | no live change
    paths: list[str]
    planned: dict  # the state the provider plans to hold afterwards


class Kind:
    type: ClassVar[str]
    schema: ClassVar[Schema]
    on_engine: ClassVar[bool] = True  # has an id on an engine
    delete_before_replace: ClassVar[bool] = False  # the provider asks for it (pulumi-docker resources.go)
    reads_after_update: ClassVar[bool] = True  # the provider's Update ends with its Read
    # The provider's Read waits this long before its first look (its StateChangeConf Delay).
    read_delay: ClassVar[float] = 0.0

    def validate(self, resource: DeclaredResource) -> None:
        """Refuse what the provider would refuse before any engine is contacted."""
        map_inputs(resource.name, self.type, self.schema, resource.inputs)

    def initial(self, inputs: dict) -> dict:
        """The state a create plans: the inputs with the schema's defaults."""
        return planned_state(self.schema, {}, inputs)

    def plan(self, live: Live, inputs: dict, ignored: Iterable[str]) -> Change:
        planned = planned_state(self.schema, live.state, inputs, ignored)
        paths = changed_paths(self.schema, live.state, planned)
        if not paths:
            return Change("same", [], planned)
        if any(self.schema.replaces(p) for p in paths):
            return Change("replace", paths, planned)
        return Change(self.update_action(paths), paths, planned)

    def update_action(self, paths: list[str]) -> str:
        return "update"

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        raise NotImplementedError

    def update(self, ctx: Context, live: Live, planned: dict) -> None:
        raise EngineApplyError(f"{live.type} {live.name!r}: the provider has no in-place update for it")

    def delete(self, ctx: Context, live: Live) -> None:
        raise NotImplementedError

    def read(self, ctx: Context, live: Live) -> Optional[dict]:
        """The attributes the provider's Read sets, flattened as it flattens them (Pulumi's names);
        None when the object is gone."""
        return {}

    def body(self, live: Live, planned: dict) -> tuple[dict, dict]:
        """The request body and applier parameters for a planned state."""
        return map_inputs(live.name, self.type, self.schema, mapped_only(self.schema.fields, planned))


def retry_removal(ctx: Context, live: Live, remove: Callable[[], Any], retry_on: str) -> None:
    """The provider's removal refresh loops: retried while the engine says `retry_on`, for up to 30 s."""
    deadline = time.monotonic() + ctx.delete_timeout
    while True:
        try:
            remove()
            return
        except EngineError as error:
            if "No such" in error.explanation or "not found" in error.explanation:
                return
            if retry_on not in error.explanation or time.monotonic() > deadline:
                raise
        time.sleep(ctx.poll_interval)


def inspect_or_none(ctx: Context, live: Live, path: str, what: str) -> Optional[dict]:
    try:
        return ctx.call(live, "GET", path, live.id or "", what=what)
    except EngineError as error:
        if "No such" in error.explanation or "not found" in error.explanation.lower():
            return None
        raise
