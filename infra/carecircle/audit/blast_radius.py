"""The blast radius of routine changes on a stack: which resources each one replaces, updates or
leaves alone, computed by evaluating the stack before and after under the mocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..offline import evaluate_stack
from .changes import ResourceChange, by_action, compare, live_changes
from .effects import rolls

# staging and prod run on Swarm, always (settings refuse them another platform). Their config rehearsed
# on one Docker engine (dev's platform) is a dev stack: `pulumi stack init dev-prod-rehearsal`, prod's
# config copied in, then these changes (the environment key says prod; the Swarm nodes are unused; a dev
# stack publishes on loopback only, policy dev-ports-on-loopback).
ON_ENGINE: dict[str, Any] = {"carecircle:environment": None, "carecircle:platform": "engine", "carecircle:swarmEdgeHosts": None,
                             "carecircle:swarmMonitoringHosts": None, "carecircle:gatewayBindAddress": "127.0.0.1"}


def rehearsal_stack(stack: str) -> str:
    """The dev stack that rehearses `stack`'s config on one engine."""
    return f"dev-{stack}-rehearsal"


# prod runs images pinned by digest.
RELEASED_IMAGE = "ghcr.io/carecircle/api:1.0.0@sha256:" + "0" * 64
NEW_IMAGE = "ghcr.io/carecircle/api:1.1.0@sha256:" + "1" * 64
OTHER_PEM = {
    "carecircle:gatewayTlsCertificate": "-----BEGIN CERTIFICATE-----\nbmV3\n-----END CERTIFICATE-----\n",
    "carecircle:gatewayTlsKey": "-----BEGIN PRIVATE KEY-----\nbmV3\n-----END PRIVATE KEY-----\n",
}


@dataclass(frozen=True)
class Scenario:
    change: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    secrets_before: dict[str, str] = field(default_factory=dict)
    secrets_after: dict[str, str] = field(default_factory=dict)


def _pools(blue_image: str, green_image: str, green_replicas: int, active: str = "blue") -> dict[str, Any]:
    return {"carecircle:apiBlueImage": blue_image, "carecircle:apiGreenImage": green_image,
            "carecircle:apiGreenReplicas": green_replicas, "carecircle:apiActiveColor": active}


RUNNING = _pools(RELEASED_IMAGE, RELEASED_IMAGE, 3)

SCENARIOS = [
    Scenario("release: bring up the idle pool (green) on a new image",
             before=_pools(RELEASED_IMAGE, RELEASED_IMAGE, 0),
             after=_pools(RELEASED_IMAGE, NEW_IMAGE, 3)),
    Scenario("new image on the running idle pool", before=RUNNING,
             after=_pools(RELEASED_IMAGE, NEW_IMAGE, 3)),
    Scenario("switch the active pool (blue -> green)", before=RUNNING, after={**RUNNING, "carecircle:apiActiveColor": "green"}),
    Scenario("rollback (green -> blue)", before={**RUNNING, "carecircle:apiActiveColor": "green"}, after=RUNNING),
    Scenario("scale the idle pool to zero", before=RUNNING, after={**RUNNING, "carecircle:apiGreenReplicas": 0}),
    Scenario("add a route", after={"carecircle:gatewayRoutes": [{"path": "/api/", "service": "api"}, {"path": "/socket.io/", "service": "api"}]}),
    Scenario("change the rate limit", after={"carecircle:gatewayRateLimitPerSecond": 50, "carecircle:gatewayRateLimitBurst": 100}),
    Scenario("change the CORS origins", after={"carecircle:gatewayCorsOrigins": ["https://app.carecircle.example", "https://admin.carecircle.example"]}),
    Scenario("renew the TLS certificate (PEM in config)", secrets_after=OTHER_PEM),
    Scenario("rotate the database URL (secret)",
             secrets_after={"carecircle:databaseUrl": "postgresql://fake:rotated@db.fake.invalid:5432/carecircle?sslmode=require"}),
    Scenario("new workers image", after={"carecircle:workersImage": NEW_IMAGE}),
    Scenario("raise the api memory limit", after={"carecircle:apiMemoryMb": 2048}),
]


def run(stack: str = "prod", on_engine: bool = False) -> list[tuple[Scenario, list[ResourceChange]]]:
    """Each scenario's changes on `stack` as committed, or on its rehearsal on one engine."""
    base, as_stack = (ON_ENGINE, rehearsal_stack(stack)) if on_engine else ({}, None)
    results = []
    for scenario in SCENARIOS:
        before = evaluate_stack(stack, overrides={**base, **scenario.before}, secrets=scenario.secrets_before, as_stack=as_stack)
        after = evaluate_stack(stack, overrides={**base, **scenario.before, **scenario.after},
                               secrets={**scenario.secrets_before, **scenario.secrets_after}, as_stack=as_stack)
        results.append((scenario, compare(before, after)))
    return results


def _rolls(change: ResourceChange) -> bool:
    """A Service update that changes what its tasks run: Swarm rolls the tasks (effects.py says when)."""
    return rolls(change)


def markdown_table(results: list[tuple[Scenario, list[ResourceChange]]]) -> str:
    lines = [
        "| change | rolling update (Swarm services) | replaced | updated in place | created | deleted |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, changes in results:
        live = live_changes(changes)
        rolled = sorted(c.name for c in live if _rolls(c))
        grouped = by_action([c for c in live if not _rolls(c)])
        cells = [", ".join(rolled) or "-", *(", ".join(grouped.get(action, [])) or "-" for action in ("replace", "update", "create", "delete"))]
        lines.append(f"| {scenario.change} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
