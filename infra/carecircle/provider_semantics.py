"""What the providers do when an input changes: replace the resource, or update it in place.

Read from the sources, not guessed (the citations are in docs/scaling.md):
- pulumi-docker 5.2 is the kreuzwerker terraform provider (v4.5-4.6) through pulumi-terraform-bridge:
  an input replaces when its own schema is ForceNew, or when it sits in a set element that holds a
  ForceNew field (changing any field of such an element re-adds it). resources.go makes Container
  delete-before-replace and auto-names `name` on Service, Secret, ServiceConfig, Network, Volume and
  Container: a name the program gives makes every replacement delete-first, an omitted one
  create-first under a new random name.
- Service: a change in place is a rolling update of its tasks (when the task spec changes).
- pulumi-command 1.2: `triggers` replaces the command, any other change updates it; both run it again.
- pulumi-random: every input change makes a new value.
Paths are camelCase input paths as the engine (and the mocks) see them, without list indices; a
path covers everything below it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Iterable, Literal

Action = Literal["replace", "update", "no live change"]

CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
COMMAND = "command:local:Command"

# Service inputs that replace the service (resource_docker_service.go ForceNew, and set elements
# holding one); everything else updates it in place.
SERVICE_REPLACING = (
    "name", "auth",
    "taskSpec.networksAdvanceds",  # every field of an attachment is ForceNew
    "taskSpec.containerSpec.labels", "taskSpec.containerSpec.hosts", "taskSpec.containerSpec.sysctl",
    "taskSpec.containerSpec.mounts.volumeOptions.labels",
)
# Secrets, configs and networks have no update at all; a volume updates only its cluster availability.
VOLUME_IN_PLACE = ("cluster.availability",)
# Container inputs the provider updates on the running container, and those it only records (they
# matter at the next create or destroy); any other change replaces it, delete-first.
CONTAINER_IN_PLACE = frozenset({"restart", "memory", "memorySwap", "memoryReservation", "cpuShares", "cpuSet"})
CONTAINER_RECORDED = frozenset({"healthcheck", "wait", "waitTimeout", "destroyGraceSeconds", "mustRun",
                                "containerReadRefreshTimeoutMilliseconds"})
# Resources whose `name` Pulumi generates when the program omits it (<logical name>-<7 hex>).
AUTONAMED = frozenset({SERVICE, SECRET, SERVICE_CONFIG, NETWORK, VOLUME, CONTAINER})


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == prefix or path.startswith(prefix + ".") for prefix in prefixes)


def replaces(type_: str, path: str) -> bool:
    """Whether a change of the input at `path` replaces a resource of `type_`."""
    if type_ == SERVICE:
        return _under(path, SERVICE_REPLACING)
    if type_ in (SECRET, SERVICE_CONFIG, NETWORK):
        return True
    if type_ == VOLUME:
        return not _under(path, VOLUME_IN_PLACE)
    if type_ == CONTAINER:
        top = path.split(".", 1)[0]
        return top not in CONTAINER_IN_PLACE and top not in CONTAINER_RECORDED
    if type_ == COMMAND:
        return _under(path, ("triggers",))
    return True  # images, random values, ...


def action_for(type_: str, paths: Iterable[str]) -> Action:
    """What the provider does when the inputs at these paths of a resource of this type change."""
    paths = list(paths)
    if not paths or type_.startswith("carecircle:"):  # components hold no state of their own
        return "no live change"
    if any(replaces(type_, path) for path in paths):
        return "replace"
    if type_ == CONTAINER and not {path.split(".", 1)[0] for path in paths} & CONTAINER_IN_PLACE:
        return "no live change"
    return "update"


_GO_UNITS_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _nanoseconds(text: str) -> int:
    parts = re.findall(r"(\d+)(ns|us|µs|ms|s|m|h)", text)
    if not text or "".join(f"{n}{u}" for n, u in parts) != text:
        raise ValueError(f"not a duration of whole units: {text!r}")
    return sum(int(number) * _GO_UNITS_NS[unit] for number, unit in parts)


def go_duration_string(text: str) -> str:
    """Go's time.Duration.String of a duration written in whole units ("60s" -> "1m0s", "1500ms" ->
    "1.5s"): the form a container's healthcheck durations are read back in (kreuzwerker
    resource_docker_container_funcs.go resourceDockerContainerRead)."""
    nanoseconds = _nanoseconds(text)
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 10**9:
        unit, scale = ("ns", 1) if nanoseconds < 10**3 else ("µs", 10**3) if nanoseconds < 10**6 else ("ms", 10**6)
        whole, rest = divmod(nanoseconds, scale)
        return f"{whole}{('.' + str(rest).rjust(len(str(scale)) - 1, '0').rstrip('0')) if rest else ''}{unit}"
    seconds, fraction = divmod(nanoseconds, 10**9)
    result = f"{seconds % 60}{('.' + str(fraction).rjust(9, '0').rstrip('0')) if fraction else ''}s"
    if seconds >= 60:
        result = f"{(seconds // 60) % 60}m{result}"
    if seconds >= 3600:
        result = f"{seconds // 3600}h{result}"
    return result


def read_back_duration(text: str) -> str:
    """A service duration in the form the provider reads it back in, so that declaring it is no diff:
    Go's Duration.String with a trailing "m0s" and then "h0m" cut (kreuzwerker
    resource_docker_service_structures.go shortDur): "120s" -> "2m", "90s" -> "1m30s", "3600s" -> "1h",
    "1000ms" -> "1s"."""
    result = go_duration_string(text)
    if result.endswith("m0s"):
        result = result[:-2]
    if result.endswith("h0m"):
        result = result[:-2]
    return result


def read_back_cpus(text: str) -> str:
    """A container's cpus in the form the provider reads it back in (kreuzwerker helpers.go
    nanoInt64ToDecimalString over the engine's NanoCpus): "2" -> "2.0", "0.50" -> "0.5". cpus is
    ForceNew: any other spelling replaces the container on every `pulumi up`."""
    nano = Fraction(text) * 10**9
    if nano.denominator != 1 or nano <= 0:
        raise ValueError(f"not a number of CPUs the engine takes: {text!r}")

    def float_string(precision: int) -> str:  # big.Rat.FloatString: halves away from zero
        scaled = Fraction(int(nano), 10**9) * 10**precision
        quotient, remainder = divmod(scaled.numerator, scaled.denominator)
        quotient += 2 * remainder >= scaled.denominator
        whole, fraction = divmod(quotient, 10**precision)
        return f"{whole}.{fraction:0{precision}d}"

    nine = float_string(9)
    return float_string(1) if nine.count("0") == 9 else nine.rstrip("0")
