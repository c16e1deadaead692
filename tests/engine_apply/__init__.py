"""Apply an offline Evaluation to real Docker engines the way `pulumi up` with pulumi-docker 5.2
(kreuzwerker/terraform-provider-docker v4.5 under pulumi-terraform-bridge), pulumi-command 1.2 and
pulumi-random would, so that a test proves on a real engine or Swarm what the program declares.

    applier.py   EngineApplier: apply (pulumi up, --refresh, --replace), preview, refresh, destroy
    plan.py      the deployment plan: order, each provider's answer, delete-first replacements and the
                 dependents they take along, protection, ignore_changes, mock ids resolved
    diff.py      a provider's diff: new inputs against the state it read back (planned state, sets,
                 Optional+Computed, DiffSuppressFuncs)
    kinds/       one module per resource kind: its inputs, schema facts, create / update / delete and the
                 read-back (flatteners) of its provider
    registry.py  image references and registry credentials as the provider and the Docker client use them
    values.py    input converters and the forms values are read back in (Go durations, shortDur, cpus)
    mapping.py   input -> Engine API request tables (an input in no table is refused, never dropped)
    client.py    engine connections and the recorded requests; records.py the state and the apply result

Each fact is read from the source file named beside it; tests/test_engine_apply_*.py prove them on a
real engine. Nothing here runs at import time; it needs the `docker` package (requirements-dev.txt).
"""

from .applier import EngineApplier
from .client import go_map_order
from .diff import changed_paths, planned_state
from .errors import (
    CommandFailedError,
    ContainerHealthError,
    ConvergeError,
    EngineApplyError,
    EngineError,
    ProtectedResourceError,
    UnmappedInputError,
    UnsupportedResourceError,
)
from .kinds import KINDS
from .mapping import mapped_paths
from .records import ApiRequest, ApplyResult, CommandRun, Live
from .values import go_duration_string, nano_decimal_string, parse_duration, short_duration

NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
SERVICE = "docker:index/service:Service"
CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"

__all__ = [
    "COMMAND", "CONFIG", "CONTAINER", "KINDS", "NETWORK", "SECRET", "SERVICE", "VOLUME", "ApiRequest", "ApplyResult",
    "CommandFailedError", "CommandRun", "ContainerHealthError", "ConvergeError", "EngineApplier", "EngineApplyError",
    "EngineError", "Live", "ProtectedResourceError", "UnmappedInputError", "UnsupportedResourceError", "changed_paths",
    "go_duration_string", "go_map_order", "mapped_paths", "nano_decimal_string", "parse_duration", "planned_state",
    "short_duration",
]
