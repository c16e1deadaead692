"""The blast radius of routine changes on a stack: which resources each one replaces, updates or
leaves alone, computed by evaluating the stack before and after under the mocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..offline import evaluate_stack
from .changes import ResourceChange, by_action, compare

NEW_IMAGE = "ghcr.io/carecircle/api:1.1.0"
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


RUNNING = _pools("ghcr.io/carecircle/api:1.0.0", "ghcr.io/carecircle/api:1.0.0", 3)

SCENARIOS = [
    Scenario("release: bring up the idle pool (green) on a new image",
             before=_pools("ghcr.io/carecircle/api:1.0.0", "ghcr.io/carecircle/api:1.0.0", 0),
             after=_pools("ghcr.io/carecircle/api:1.0.0", NEW_IMAGE, 3)),
    Scenario("new image on the running idle pool", before=RUNNING,
             after=_pools("ghcr.io/carecircle/api:1.0.0", NEW_IMAGE, 3)),
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


def run(stack: str = "prod") -> list[tuple[Scenario, list[ResourceChange]]]:
    results = []
    for scenario in SCENARIOS:
        before = evaluate_stack(stack, overrides=scenario.before, secrets=scenario.secrets_before)
        after = evaluate_stack(stack, overrides={**scenario.before, **scenario.after},
                               secrets={**scenario.secrets_before, **scenario.secrets_after})
        results.append((scenario, compare(before, after)))
    return results


def markdown_table(results: list[tuple[Scenario, list[ResourceChange]]]) -> str:
    lines = [
        "| change | replaced (delete, then create) | updated in place | created | deleted |",
        "|---|---|---|---|---|",
    ]
    for scenario, changes in results:
        grouped = by_action(changes)
        cells = [", ".join(grouped.get(action, [])) or "-" for action in ("replace", "update", "create", "delete")]
        lines.append(f"| {scenario.change} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
