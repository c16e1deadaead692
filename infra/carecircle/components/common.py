"""Container settings every CareCircle container shares: restart policy, log rotation, labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi_docker as docker

HEALTHCHECK_INTERVAL = "10s"
HEALTHCHECK_TIMEOUT = "5s"
HEALTHCHECK_RETRIES = 5


@dataclass(frozen=True)
class ContainerRuntime:
    """What the settings say about running any container of this stack."""

    stack: str
    environment: str
    restart: str
    log_max_size: str
    log_max_files: int

    def container_kwargs(self, role: str, extra_labels: Optional[dict[str, str]] = None) -> dict[str, Any]:
        labels = {
            "com.carecircle.stack": self.stack,
            "com.carecircle.environment": self.environment,
            "com.carecircle.role": role,
            **(extra_labels or {}),
        }
        return {
            "restart": self.restart,
            "log_driver": "json-file",
            "log_opts": {"max-size": self.log_max_size, "max-file": str(self.log_max_files)},
            "labels": [docker.ContainerLabelArgs(label=k, value=v) for k, v in labels.items()],
        }


def healthcheck(test: list[str], start_period: str = "30s") -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(
        tests=test,
        interval=HEALTHCHECK_INTERVAL,
        timeout=HEALTHCHECK_TIMEOUT,
        retries=HEALTHCHECK_RETRIES,
        start_period=start_period,
    )
