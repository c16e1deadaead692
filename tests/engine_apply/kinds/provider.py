"""An explicit docker provider (pulumi:providers:docker): where its resources live, and the registry
credentials its creates and updates send (provider.go providerSetToRegistryAuth)."""

from __future__ import annotations

from ..client import Context
from ..mapping import Schema, to
from ..records import Live
from ..registry import registry_auth_entries
from ..values import string
from .base import Change, Kind

FIELDS = {"host": to("@host", string), "registryAuth": to("@registryAuth", registry_auth_entries)}


class Provider(Kind):
    type = "pulumi:providers:docker"
    schema = Schema(fields=FIELDS, unordered=frozenset({"registryAuth"}))
    on_engine = False

    def plan(self, live: Live, inputs: dict, ignored) -> Change:
        change = super().plan(live, inputs, ignored)
        # DiffConfig: a provider whose host changes would move every resource it manages.
        return Change("replace", change.paths, change.planned) if "host" in change.paths else change

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        ctx.client(planned["host"]).ping()
        live.host = planned["host"]

    def update(self, ctx: Context, live: Live, planned: dict) -> None:
        """New credentials: used by the next create or update of the resources it manages."""

    def delete(self, ctx: Context, live: Live) -> None:
        """Nothing lives on an engine."""


class ProviderAlias(Provider):
    type = "docker:index/provider:Provider"
