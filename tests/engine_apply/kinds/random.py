"""pulumi-random's resources: nothing on an engine; any input change makes a new value (replace)."""

from __future__ import annotations

from typing import Iterable

from ..client import Context
from ..diff import changed_paths
from ..mapping import Schema
from ..records import Live
from .base import Change, Kind


class Random(Kind):
    type = "random:"  # every random:index/... type
    schema = Schema(fields={})
    on_engine = False

    def validate(self, resource) -> None:
        """The provider checks its own inputs; nothing here reaches an engine."""

    def initial(self, inputs: dict) -> dict:
        return dict(inputs)

    def plan(self, live: Live, inputs: dict, ignored: Iterable[str]) -> Change:
        paths = changed_paths(self.schema, live.state, inputs)
        return Change("replace" if paths else "same", paths, dict(inputs))

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        live.state = dict(planned)

    def delete(self, ctx: Context, live: Live) -> None:
        """Nothing to remove."""
