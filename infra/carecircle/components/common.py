"""Container settings every CareCircle container shares: restart policy, log rotation, labels."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from ..provider_semantics import go_duration_string

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
    healthcheck_interval: str

    def healthcheck(self, test: list[str], start_period: str = "30s") -> docker.ContainerHealthcheckArgs:
        # In the form the provider reads them back in (Duration.String: "60s" is "1m0s"): no diff on every run.
        return docker.ContainerHealthcheckArgs(
            tests=test,
            interval=go_duration_string(self.healthcheck_interval),
            timeout=go_duration_string(HEALTHCHECK_TIMEOUT),
            retries=HEALTHCHECK_RETRIES,
            start_period=go_duration_string(start_period),
        )

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


def apply_in_container(
    name: str,
    container: docker.Container,
    container_name: str,
    script: str,
    bundle: pulumi.Input[str],
    docker_host: Optional[str],
    depends_on: Sequence[pulumi.Resource] = (),
    parent: Optional[pulumi.Resource] = None,
    as_root: bool = False,
) -> command.local.Command:
    """Pipe a configuration bundle into `script` inside a running container (docker exec), so a
    configuration change updates this command and never replaces the container. The docker CLI
    reaches the provider's engine: DOCKER_HOST is docker:host (ssh:// included)."""
    environment = {"DOCKER_HOST": docker_host} if docker_host else {}
    user = "-u 0 " if as_root else ""
    return command.local.Command(
        name,
        create=f"docker exec {user}-i {shlex.quote(container_name)} sh -c {shlex.quote(script)}",
        stdin=bundle,
        environment=environment,
        # A new container starts from its bootstrap configuration: apply again.
        triggers=[container.id],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[container, *depends_on]),
    )


def data_volume(name: str, volume_name: str, runtime: ContainerRuntime, protect: bool, parent: pulumi.Resource,
                provider: Optional[pulumi.ProviderResource] = None) -> docker.Volume:
    """A named volume holding data. In staging/prod it is protected and retained, so `pulumi destroy`
    or an accidental replacement cannot delete it; its labels tell the policy pack where it runs."""
    return docker.Volume(
        name,
        name=volume_name,
        labels=[
            docker.VolumeLabelArgs(label="com.carecircle.stack", value=runtime.stack),
            docker.VolumeLabelArgs(label="com.carecircle.environment", value=runtime.environment),
        ],
        opts=pulumi.ResourceOptions(parent=parent, protect=protect, retain_on_delete=protect, provider=provider),
    )
