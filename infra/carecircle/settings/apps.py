"""The api (two blue-green pools) and the workers: images, replicas, limits, shutdown, JWT."""

from __future__ import annotations

import ipaddress
from typing import Iterator, Literal, Optional

from .address_types import ImageRef
from .base import Environment, Section, Violation, cross_rule, key
from .runtime import STATIC_OFFSET, pool_capacity
from .secret_types import JWT_SECRET, secret
from .types import CommandArgument, ContainerPath, Cpus, HttpPath, JwtLifetime, Port, RepositoryDirectory, config_int

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")
Replicas = config_int(0, 10_000)
MemoryMb = config_int(64, 1_048_576)  # Docker's floor is 6 MB; a Node service needs far more
GraceSeconds = config_int(1, 3600)
JwtSecret = secret(JWT_SECRET)
RELEASE_IMAGE_EXAMPLE = "ghcr.io/carecircle/api:<version>"


class AppSettings(Section):
    # Blue-green: two api pools; the gateway sends traffic to the active one only.
    api_active_color: Color = key("The api pool that receives traffic: blue or green.", "blue")
    api_blue_image: Optional[ImageRef] = key("Image of the blue api pool (registry/name:tag or @sha256 digest).", "ghcr.io/carecircle/api:1.4.2", default=None)
    api_green_image: Optional[ImageRef] = key("Image of the green api pool.", "ghcr.io/carecircle/api:1.4.3", default=None)
    api_blue_replicas: Replicas = key("Replicas of the blue pool (>= 2 when active in staging/prod; 0 scales it away).", 2)
    api_green_replicas: Replicas = key("Replicas of the green pool (>= 2 when active in staging/prod; 0 scales it away).", 0)
    api_build_context: Optional[RepositoryDirectory] = key(
        "dev only: build the api image from this directory of the repository, for both pools.", "dev/stub-app", default=None)
    api_shutdown_grace_seconds: GraceSeconds = key(
        "Seconds an api replica gets after SIGTERM to finish in-flight requests before it is killed.", 30)
    api_port: Port = key("Port the API listens on inside its container (PORT).", 3000)
    api_health_path: HttpPath = key("API health endpoint used by the healthcheck.", "/health")
    api_memory_mb: MemoryMb = key("Memory limit of each API replica, in MB.", 512)
    api_cpus: Cpus = key("CPU limit of each API replica, e.g. \"1.0\".", "1.0")

    workers_image: Optional[ImageRef] = key("Workers image, registry/name:tag or @sha256 digest.", "ghcr.io/carecircle/api:1.4.2", default=None)
    workers_build_context: Optional[RepositoryDirectory] = key(
        "dev only: build the workers image from this directory of the repository instead.", "dev/stub-app", default=None)
    workers_command: Optional[list[CommandArgument]] = key(
        "Command of the workers (default: the image's own).", ["node", "dist/worker.js"], default=None, min_length=1, max_length=64)
    workers_replicas: Replicas = key("Number of BullMQ workers (0 stops them).", 1)
    workers_memory_mb: MemoryMb = key("Memory limit of each worker, in MB.", 512)
    workers_cpus: Cpus = key("CPU limit of each worker.", "1.0")
    workers_shutdown_grace_seconds: GraceSeconds = key(
        "Seconds a worker gets after SIGTERM to finish its in-flight jobs before it is killed.", 120)
    workers_heartbeat_file: ContainerPath = key(
        "File each worker touches while healthy; the healthcheck fails once it is 30 s old.", "/tmp/worker-heartbeat")

    jwt_expires_in: JwtLifetime = key("JWT lifetime (JWT_EXPIRES_IN), e.g. 15m.", "15m")
    jwt_secret: Optional[JwtSecret] = key(
        "JWT signing secret (>= 32 characters). Generated (64 characters) when unset.", "<at least 32 random characters>", default=None)

    @cross_rule
    def _workers_image_or_build(self, environment: Environment) -> Iterator[Violation]:
        if self.workers_image is None and self.workers_build_context is None:
            yield Violation("workers_image", "set the workers image (or, in dev only, workersBuildContext)", RELEASE_IMAGE_EXAMPLE)
        elif self.workers_image is not None and self.workers_build_context is not None:
            yield Violation("workers_build_context", "set either workersImage or workersBuildContext, not both", "")

    @cross_rule
    def _pool_images(self, environment: Environment) -> Iterator[Violation]:
        for color in COLORS:
            image_field = f"api_{color}_image"
            if self.api_build_context is not None and getattr(self, image_field) is not None:
                yield Violation(image_field, "apiBuildContext builds the image of both pools: remove one of them", "")
            elif self.api_build_context is None and getattr(self, image_field) is None and self.pool_runs(color):
                yield Violation(image_field, f"the {color} pool runs replicas: set its image (or, in dev only, apiBuildContext)", RELEASE_IMAGE_EXAMPLE)

    @cross_rule
    def _active_pool_replicas(self, environment: Environment) -> Iterator[Violation]:
        field = f"api_{self.api_active_color}_replicas"
        replicas = getattr(self, field)
        if environment.strict and replicas < 2:
            yield Violation(field, f"{environment.strict} needs at least 2 replicas in the active pool so one can fail or restart", 2)
        elif replicas < 1:
            yield Violation(field, "the active pool needs at least 1 replica", 1)

    @cross_rule
    def _build_contexts_dev_only(self, environment: Environment) -> Iterator[Violation]:
        for field in ("api_build_context", "workers_build_context"):
            if environment.strict and getattr(self, field) is not None:
                yield Violation(field, f"{environment.strict} runs released images only: set the image key instead", "")

    @cross_rule
    def _pools_fit_the_edge_subnet(self, environment: Environment) -> Iterator[Violation]:
        if self.platform != "engine":  # type: ignore[attr-defined]
            return
        capacity = pool_capacity(self.edge_subnet)  # type: ignore[attr-defined]
        for color in COLORS:
            if self.api_replicas(color) > capacity:
                yield Violation(f"api_{color}_replicas", f"at most {capacity} replicas per pool fit the edgeSubnet's fixed addresses "
                                                         "(a larger edgeSubnet holds more)", capacity)

    # ---- derived values ----

    @property
    def idle_color(self) -> Color:
        return "green" if self.api_active_color == "blue" else "blue"

    def api_replicas(self, color: str) -> int:
        return self.api_blue_replicas if color == "blue" else self.api_green_replicas

    def api_image(self, color: str) -> Optional[str]:
        return self.api_blue_image if color == "blue" else self.api_green_image

    def pool_runs(self, color: str) -> bool:
        return self.api_active_color == color or self.api_replicas(color) > 0

    def api_container_names(self, color: str) -> list[str]:
        return [self.docker_name("api", color, str(i)) for i in range(1, self.api_replicas(color) + 1)]  # type: ignore[attr-defined]

    def api_addresses(self, color: str) -> list[str]:
        """Fixed edge addresses of a pool: a replaced or restarted container keeps its address, so
        the gateway, which resolves upstreams only at (re)load, never points at a stale one."""
        network = ipaddress.IPv4Network(self.edge_subnet)  # type: ignore[attr-defined]
        first = STATIC_OFFSET + (0 if color == "blue" else pool_capacity(self.edge_subnet))  # type: ignore[attr-defined]
        return [str(network.network_address + first + i) for i in range(self.api_replicas(color))]

