"""One module per resource kind the stacks declare; KINDS maps a type token to its kind."""

from __future__ import annotations

from .base import Change, Kind
from .command import Command
from .container import Container
from .network import Network
from .provider import Provider, ProviderAlias
from .random import Random
from .service import Service
from .swarm_object import Secret, ServiceConfig
from .volume import Volume

KINDS: dict[str, Kind] = {kind.type: kind for kind in (Network(), Volume(), Secret(), ServiceConfig(), Service(), Container(),
                                                       Command(), Provider(), ProviderAlias())}
RANDOM = Random()


def kind_of(type_: str) -> Kind | None:
    """The kind of a resource type (every pulumi-random type is one), None for anything else."""
    return RANDOM if type_.startswith("random:") else KINDS.get(type_)


# pulumi-docker provider/resources.go SetAutonaming(255, "-"): a resource with a `name` the program leaves
# out is named <logical name>-<7 hex> and replaced create-first; one the program names is replaced
# delete-first (pulumi-terraform-bridge pkg/tfbridge/schema.go nameRequiresDeleteBeforeReplace).
AUTONAMED = frozenset({Network.type, Volume.type, Secret.type, ServiceConfig.type, Service.type, Container.type})

__all__ = ["AUTONAMED", "KINDS", "Change", "Kind", "kind_of"]
