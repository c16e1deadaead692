"""Who the stack is and where it runs: environment, names, the Docker host, container defaults,
the edge network."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Iterator, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from .address_types import DockerHost
from .base import Environment, Section, Violation, cross_rule, key
from .errors import DOCKER_HOST_KEY, REGISTRY_AUTH_KEY, SSH_OPTS_KEY
from .secret_types import SecretKind
from .ssh_options import SshOptionsError, host_key_checking
from .types import STRICT_ENVIRONMENTS, DockerName, LogSize, config_int, pattern, rule, text_type, visible_text

EnvironmentName = Literal["dev", "staging", "prod"]
# Docker's default bridge (docker0); an edge network on it would clash with the host's own routes.
DOCKER_DEFAULT_BRIDGE = ipaddress.IPv4Network("172.17.0.0/16")
# The edge subnet's lower half holds the api pools' fixed addresses (from offset 16, blue then green),
# the upper half is Docker's for everything else.
EDGE_MAX_PREFIX = 25
STATIC_OFFSET = 16
# How long `pulumi up` waits for the gateway container to turn healthy (components/gateway.py
# wait_timeout), and a probe's timeout (components/common.py): Docker runs the first probe one
# interval after the start, so an interval longer than the wait fails every create of the gateway.
GATEWAY_WAIT_SECONDS = 60
HEALTHCHECK_PROBE_TIMEOUT_SECONDS = 5
# Restart policies that restart a container after any exit and after the engine restarts
# (`on-failure` leaves one that exited 0 stopped).
RESTARTING_POLICIES = ("unless-stopped", "always")


def _edge_subnet(value: Any) -> str:
    message = "must be an IPv4 subnet such as 172.30.0.0/24 (host bits unset)"
    text = pattern(r"[0-9./]+", message)(value)
    try:
        network = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        raise rule(message) from None
    if not network.is_private or network.prefixlen > EDGE_MAX_PREFIX:
        raise rule(f"must be a private subnet of /{EDGE_MAX_PREFIX} or larger")
    if network.overlaps(DOCKER_DEFAULT_BRIDGE):
        raise rule(f"overlaps Docker's default bridge {DOCKER_DEFAULT_BRIDGE}: containers could not reach the host's own bridge")
    return text


EdgeSubnet = Annotated[str, BeforeValidator(_edge_subnet)]
LogFiles = config_int(1, 100)
RegistryAddress = text_type(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?::[0-9]{1,5})?",
                            "must be a registry host such as ghcr.io or registry.example:5000 (no scheme, no path)")
RegistryUser = text_type(r"[\x21-\x7e]{1,256}", "must be a user name (visible ASCII, at most 256 characters)")


def _registry_password(value: Any) -> SecretStr:
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return SecretStr(visible_text(text, "must be the registry password or token"))


class RegistryCredential(BaseModel):
    """One entry of docker:registryAuth (the provider's own shape; config files are not read here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    address: RegistryAddress
    username: RegistryUser
    password: Annotated[SecretStr, BeforeValidator(_registry_password)]


# The whole key is a secret (it holds passwords); the offline tools fake it with this list.
REGISTRY_AUTH = SecretKind(lambda text: None, '[{{"address":"registry.fake.invalid","username":"fake","password":"fake-{tag}"}}]')
# One argv element: visible ASCII with spaces inside only (`-o`, `Key value`), at most 1024 characters.
SSH_OPTION = re.compile(r"(?=.{1,1024}$)[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?", flags=re.DOTALL)
MAX_SSH_OPTIONS = 64


def _ssh_options(value: Any) -> list[str]:
    message = 'must be a list of ssh flags, one argv element each, such as ["-o", "ServerAliveInterval=30"]'
    if not isinstance(value, list) or not all(isinstance(element, str) and SSH_OPTION.fullmatch(element) for element in value):
        raise rule(f"{message} (visible ASCII with spaces inside only, at most 1024 characters each)")
    if len(value) > MAX_SSH_OPTIONS:
        raise rule(f"{message}: at most {MAX_SSH_OPTIONS}")
    try:
        host_key_checking(value)
    except SshOptionsError as error:
        raise rule(f"ssh refuses these options: {error}") from None
    return value


SshOptions = Annotated[list[str], BeforeValidator(_ssh_options)]
HealthcheckInterval = text_type(r"(?:[1-9]|[1-9][0-9]|[12][0-9][0-9]|300)s", "must be whole seconds from 1s to 300s, such as 10s")


def pool_capacity(edge_subnet: str) -> int:
    """Fixed addresses available to each api pool in the edge subnet."""
    return (ipaddress.IPv4Network(edge_subnet).num_addresses // 2 - STATIC_OFFSET) // 2


class RuntimeSettings(Section):
    environment: Optional[EnvironmentName] = key(
        "Which rules apply: dev, staging or prod. Bound to the stack name (see README); may only repeat it.", "prod", default=None)
    platform: Literal["engine", "swarm"] = key(
        "engine: containers on one Docker engine (dev only); swarm: services on a Docker Swarm whose manager is docker:host "
        "(staging and prod always).", "swarm")
    name_prefix: DockerName = key("Prefix of every Docker name: <prefix>-<stack>-<role>.", "carecircle")
    docker_host: Optional[DockerHost] = key(
        "Docker engine to deploy to: ssh://user@host (staging/prod), or in dev unix:///path (default: the local engine).",
        "ssh://deploy@docker-host.example", alias=DOCKER_HOST_KEY, default=None)
    registry_auth: Annotated[list[RegistryCredential], REGISTRY_AUTH] = key(
        "Registry credentials every Docker host pulls the stack's private images with (the docker provider's own key, a "
        "secret): the default provider reads it, and the program gives it to the providers of the edge and monitoring nodes; "
        "on Swarm the manager hands it to every node that runs a task.",
        [{"address": "ghcr.io", "username": "carecircle-deploy", "password": "<token>"}], alias=REGISTRY_AUTH_KEY, default=[])
    ssh_opts: SshOptions = key(
        "Extra ssh flags for every ssh://user@host the stack reaches (the docker provider's own key, put before the "
        "user and host as ssh reads them): the default provider reads it, and the program gives it to the providers of "
        "the edge and monitoring nodes. staging/prod refuse flags that let an unverified host key through.",
        ["-o", "ServerAliveInterval=30"], alias=SSH_OPTS_KEY, default=[])
    node_env: Literal["development", "production", "test"] = key("NODE_ENV of api and workers.", "production")
    restart_policy: Literal["no", "on-failure", "always", "unless-stopped"] = key("Docker restart policy of every container.", "unless-stopped")
    log_max_size: LogSize = key("json-file log rotation: size of one file (k, m or g).", "10m")
    log_max_files: LogFiles = key("json-file log rotation: files kept per container.", 3)
    healthcheck_interval: HealthcheckInterval = key(
        "How often Docker runs every healthcheck; a replica is taken out after 5 failures in a row, and a new one counts as "
        "started (rolling updates, switches) at its first success, one interval after it starts at the earliest (at most 55s: "
        "`pulumi up` waits 60 s for the gateway).", "10s")
    edge_subnet: EdgeSubnet = key(
        "engine only: IPv4 subnet of the edge network; api containers get fixed addresses in its lower half.", "172.30.0.0/24")
    stack: DockerName = Field(default="", exclude=True, description="The Pulumi stack name: set by the loader, never by config.")

    @cross_rule
    def _environment_is_the_stacks(self, environment: Environment) -> Iterator[Violation]:
        if self.environment is not None and self.environment != environment.name:
            yield Violation("environment", f"stack '{self.stack}' is a {environment.name} stack (bound by its name); "
                                           f"it cannot declare itself {self.environment}", environment.name)

    @cross_rule
    def _one_credential_per_registry(self, environment: Environment) -> Iterator[Violation]:
        addresses = [credential.address for credential in self.registry_auth]
        for index, address in enumerate(addresses):
            if address in addresses[:index]:
                yield Violation("registry_auth", f"lists {address} twice: the provider keeps one credential per registry", "",
                                path=f"[{index}].address")

    @cross_rule
    def _host_keys_checked(self, environment: Environment) -> Iterator[Violation]:
        checking = host_key_checking(self.ssh_opts)
        disabled = checking.disabled_by
        if environment.strict and disabled:
            remaining = checking.without(self.ssh_opts, disabled)
            yield Violation("ssh_opts", f"{checking.described(disabled)} lets ssh accept any host key: in {environment.strict} "
                                        "the machine that runs pulumi up must verify each node (put its host key in "
                                        "known_hosts, read from the node itself, as the deploy workflows do)",
                            remaining if remaining else "")

    @cross_rule
    def _remote_docker_host(self, environment: Environment) -> Iterator[Violation]:
        if environment.strict and self.docker_host is None:
            yield Violation("docker_host", f"{environment.strict} deploys to a remote Docker host: set ssh://user@host")
        elif self.platform == "swarm" and self.docker_host is None:
            yield Violation("docker_host", "a swarm stack deploys through a swarm manager: set its Docker host")

    @cross_rule
    def _production_runtime(self, environment: Environment) -> Iterator[Violation]:
        if not environment.strict:
            return
        if self.node_env != "production":
            # Express and most Node libraries show stack traces and skip caches outside production.
            yield Violation("node_env", f"{environment.strict} runs the api and workers with NODE_ENV=production", "production")
        if self.restart_policy not in RESTARTING_POLICIES:
            yield Violation("restart_policy", f"{environment.strict} containers come back whatever stopped them (a crash, an exit "
                                              f"0, a restart of the engine): {' or '.join(RESTARTING_POLICIES)}, not "
                                              f"{self.restart_policy}", "unless-stopped")

    @cross_rule
    def _swarm_in_staging_and_prod(self, environment: Environment) -> Iterator[Violation]:
        if environment.strict and self.platform != "swarm":
            # One engine is one host: a lost host takes every replica, and containers replace delete-first.
            yield Violation("platform", f"{environment.strict} runs the api and workers as Swarm services spread across nodes "
                                        f"(rolling updates, a lost node's tasks rescheduled); {self.platform} is one Docker "
                                        "host, for dev (rehearse prod's config on one engine in a dev-<name> stack)", "swarm")

    @cross_rule
    def _gateway_turns_healthy_while_waited_for(self, environment: Environment) -> Iterator[Violation]:
        interval = int(str(self.healthcheck_interval).rstrip("s"))
        if interval + HEALTHCHECK_PROBE_TIMEOUT_SECONDS > GATEWAY_WAIT_SECONDS:
            longest = GATEWAY_WAIT_SECONDS - HEALTHCHECK_PROBE_TIMEOUT_SECONDS
            yield Violation("healthcheck_interval", f"the gateway's first healthcheck runs {self.healthcheck_interval} after it "
                                                    f"starts (and may take {HEALTHCHECK_PROBE_TIMEOUT_SECONDS} s), but `pulumi up` "
                                                    f"waits {GATEWAY_WAIT_SECONDS} s for it to turn healthy: at most {longest}s",
                            f"{longest}s")

    # ---- derived values ----

    @property
    def protect_data(self) -> bool:
        """Data volumes in staging/prod survive `pulumi destroy`."""
        return self.environment in STRICT_ENVIRONMENTS

    def docker_name(self, *parts: str) -> str:
        # Formatted, not joined: an invalid prefix (while cross rules run) then skips the rule reading it.
        return "-".join([f"{self.name_prefix}", self.stack, *parts])

    @property
    def edge_dynamic_range(self) -> str:
        """The upper half of the edge subnet, where Docker picks addresses for other containers."""
        network = ipaddress.IPv4Network(self.edge_subnet)
        return str(list(network.subnets(prefixlen_diff=1))[1])
