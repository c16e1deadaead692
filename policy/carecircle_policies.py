"""CareCircle's policy rules, as pulumi-policy validators.

A rule decides on nothing the stack's own config can write:

- A resource's environment comes from the stack name in its URN (`urn:pulumi:<stack>::<project>::...`),
  which the engine sets and config cannot change, by the program's own rule (`environment_of_stack`
  below, a copy of infra/carecircle/settings/loading.py's; tests/test_policy.py checks that both
  agree). A stack name bound to no environment gets the prod rules, the strictest.
- What a container is comes from what it runs: a data service by its image, the data path it mounts,
  the server its command starts or the data port it serves; the gateway by serving the HTTPS
  container port, by being an nginx image that publishes ports, or (staging/prod) by publishing a
  port to the network. The program's `com.carecircle.role` label is only one more piece of evidence:
  dropping or changing it never exempts a container.
- A Swarm service (docker:index/service:Service) is judged by what its tasks run: the container rules
  (exposure, TLS, images, plaintext secrets) see its task as a container (`container_view`: image,
  command, mounts, published ports, labels, environment), and the swarm rules read its own spec:
  replicas and the placement limit per node, the update policy, the environment, healthcheck,
  restart policy, log rotation and stop grace period. Which service it is (api, workers) never matters.

Validators see input properties as the engine sends them (camelCase, numbers as floats, secrets
already decrypted), so the secrets rule judges values, not their secret flag. During a preview an
input can still be unknown; evidence that cannot be read yet counts as none (the engine runs the
rules again with every value known during `pulumi up`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import posixpath
import re
import shlex
import tarfile
from typing import Any, Callable, Mapping, Optional
from urllib.parse import parse_qsl

import yaml
from publicsuffixlist import PublicSuffixList
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
SERVICE = "docker:index/service:Service"
SWARM_SECRET = "docker:index/secret:Secret"
SWARM_CONFIG = "docker:index/serviceConfig:ServiceConfig"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
COMMAND = "command:local:Command"

# --- The environment, from the stack name the engine reports -------------------------------------
# Keep in step with infra/carecircle/settings/loading.py (the pack runs in its own venv and cannot
# import the program); tests/test_policy.py fails when the two disagree, tables included.
ENVIRONMENTS = ("dev", "staging", "prod")
STACK_ENVIRONMENT_EXCEPTIONS: dict[str, str] = {}
STRICT = ("staging", "prod")
UNBOUND = "prod"  # a stack name the program would refuse: judged with the strictest rules


def environment_of_stack(stack: str) -> Optional[str]:
    """A stack's environment is its name's first word: `prod`, `prod-eu` → prod; `dev-alice` → dev."""
    if stack in STACK_ENVIRONMENT_EXCEPTIONS:
        return STACK_ENVIRONMENT_EXCEPTIONS[stack]
    head = stack.split("-", 1)[0]
    return head if head in ENVIRONMENTS else None


def stack_of(urn: str) -> Optional[str]:
    """The stack name of `urn:pulumi:<stack>::<project>::<type>::<name>`, or None."""
    prefix = "urn:pulumi:"
    if not isinstance(urn, str) or not urn.startswith(prefix):
        return None
    stack, separator, _ = urn[len(prefix):].partition("::")
    return stack if separator and stack else None


def environment(urn: str) -> str:
    """The environment whose rules apply to the resource with this URN (never from its labels)."""
    stack = stack_of(urn)
    return (environment_of_stack(stack) if stack else None) or UNBOUND


# --- What a container is ---------------------------------------------------------------------------
ROLE_LABEL = "com.carecircle.role"
DATA_ROLES = ("postgres", "redis", "rabbitmq")
# Repository names (the last path component, any registry, tag or digest) of data-service images.
DATA_IMAGES = frozenset({
    "postgres", "postgresql", "postgis", "timescaledb", "timescaledb-ha", "pgvector",
    "redis", "redis-stack", "redis-stack-server", "valkey", "keydb", "dragonfly",
    "rabbitmq", "mongo", "mongodb", "mongodb-community-server", "mysql", "mysql-server", "mariadb",
    "percona", "percona-server", "memcached", "elasticsearch", "opensearch", "cassandra", "couchdb",
    "neo4j", "influxdb", "clickhouse-server", "cockroach", "etcd", "zookeeper", "kafka", "minio",
})
# Where those images keep their data (a volume or bind mount here, or below it, holds data).
DATA_PATHS = (
    "/var/lib/postgresql", "/data", "/var/lib/rabbitmq", "/var/lib/mysql", "/var/lib/mongodb",
    "/var/lib/redis", "/usr/share/elasticsearch/data", "/usr/share/opensearch/data", "/var/lib/cassandra",
    "/opt/couchdb/data", "/var/lib/influxdb", "/var/lib/influxdb2", "/var/lib/clickhouse", "/bitnami",
)
# Server binaries a data-service command or entrypoint starts.
DATA_SERVERS = frozenset({
    "postgres", "postmaster", "pg_ctl", "pg_ctlcluster", "redis-server", "valkey-server", "keydb-server",
    "rabbitmq-server", "mongod", "mysqld", "mysqld_safe", "mariadbd", "memcached",
})
# Container ports only data services serve (postgres, redis, AMQP, RabbitMQ management and
# clustering, mongo, mysql, memcached, elasticsearch).
DATA_PORTS = frozenset({5432, 6379, 5672, 15672, 25672, 4369, 27017, 3306, 11211, 9200, 9300})
HTTPS_CONTAINER_PORT = 8443
GATEWAY_IMAGES = frozenset({"nginx", "nginx-unprivileged", "openresty", "angie", "tengine"})
LOOPBACK = "127.0.0.1"
DOCKER_DEFAULT_BIND = "0.0.0.0"  # what Docker binds a published port to when no address is given


def _known(read: Callable[[], Any], default: Any = None) -> Any:
    """read(), or default while a preview does not know the value yet."""
    try:
        return read()
    except UnknownValueError:
        return default


def labels(props: Mapping[str, Any]) -> dict[str, str]:
    return {item.get("label"): item.get("value") for item in props.get("labels") or []}


def image_repository(image: Any) -> Optional[str]:
    """`registry:5000/library/postgres:15@sha256:...` → `postgres`; None for an image id or a non-string."""
    if not isinstance(image, str) or not image or re.fullmatch(r"sha256:[0-9a-f]+", image):
        return None
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0].lower() or None


def bind_address(port: Mapping[str, Any]) -> str:
    """The host address a published port listens on; a missing or empty `ip` is Docker's 0.0.0.0."""
    return port.get("ip") or DOCKER_DEFAULT_BIND


def _port(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _mount_paths(props: Mapping[str, Any]) -> list[str]:
    paths = [v.get("containerPath") for v in props.get("volumes") or []]
    paths += [m.get("target") for m in props.get("mounts") or []]
    return [posixpath.normpath(p) for p in paths if isinstance(p, str) and p]


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _executables(props: Mapping[str, Any]) -> set[str]:
    """The base names of every word of the command and entrypoint (shell strings split as sh would)."""
    words: list[str] = []
    for key in ("entrypoints", "command"):
        for part in props.get(key) or []:
            if not isinstance(part, str):
                continue
            try:
                words += shlex.split(part)
            except ValueError:
                words += part.split()
    return {posixpath.basename(word) for word in words}


def _published(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(props.get("ports") or [])


def data_service_evidence(props: Mapping[str, Any]) -> list[str]:
    """Why this container is a data service (empty: it is not one)."""
    evidence: list[str] = []
    repository = _known(lambda: image_repository(props.get("image")))
    if repository in DATA_IMAGES:
        evidence.append(f"image {props.get('image')}")
    for path in _known(lambda: _mount_paths(props), []):
        if _under(path, DATA_PATHS):
            evidence.append(f"data mounted at {path}")
    servers = sorted(_known(lambda: _executables(props), set()) & DATA_SERVERS)
    if servers:
        evidence.append(f"runs {', '.join(servers)}")
    ports = sorted({p for p in _known(lambda: [_port(port.get("internal")) for port in _published(props)], []) if p in DATA_PORTS})
    if ports:
        evidence.append(f"serves data port {', '.join(map(str, ports))}")
    role = _known(lambda: labels(props).get(ROLE_LABEL))
    if role in DATA_ROLES:
        evidence.append(f"role label {role}")
    return evidence


def gateway_evidence(props: Mapping[str, Any], env: str) -> list[str]:
    """Why this container is an entry point that must serve HTTPS in staging/prod (empty: it is not)."""
    evidence: list[str] = []
    ports = _known(lambda: _published(props), [])
    if any(_port(p.get("internal")) == HTTPS_CONTAINER_PORT for p in ports):
        evidence.append(f"serves the HTTPS container port {HTTPS_CONTAINER_PORT}")
    if ports and _known(lambda: image_repository(props.get("image"))) in GATEWAY_IMAGES:
        evidence.append(f"nginx image {props.get('image')} publishing ports")
    public = _known(lambda: sorted({bind_address(p) for p in ports if bind_address(p) != LOOPBACK}), [])
    if env in STRICT and public:
        evidence.append(f"publishes ports on {', '.join(public)}")
    if _known(lambda: labels(props).get(ROLE_LABEL)) == "gateway":
        evidence.append("role label gateway")
    return evidence


def _network_mode(props: Mapping[str, Any]) -> str:
    return props.get("networkMode") or ""


# --- A Swarm service's task, seen as a container -----------------------------------------------------
class TaskView(Mapping):
    """A Service's task in the shape of a Container's inputs, so the container rules judge what it runs
    and exposes: Swarm's `commands` replace the image's entrypoint and `args` its command; a port in
    the endpoint spec is published on every node (ingress) or on each node running a task (host),
    never on one address, so it has no bind address (Docker's 0.0.0.0). Each field is read from the
    service when a rule reads it, so a value a preview does not know yet raises there, as it would
    on a container (the engine then runs the rule again once it is known)."""

    def __init__(self, props: Mapping[str, Any], name: str):
        spec = lambda: (props.get("taskSpec") or {}).get("containerSpec") or {}  # noqa: E731
        self._fields: dict[str, Callable[[], Any]] = {
            "name": lambda: props.get("name") or name,
            "image": lambda: spec().get("image"),
            "entrypoints": lambda: list(spec().get("commands") or []),
            "command": lambda: list(spec().get("args") or []),
            "mounts": lambda: list(spec().get("mounts") or []),
            "ports": lambda: [{"internal": p.get("targetPort"), "external": p.get("publishedPort"), "ip": ""}
                              for p in (props.get("endpointSpec") or {}).get("ports") or []],
            "labels": lambda: [*(spec().get("labels") or []), *(props.get("labels") or [])],
            "healthcheck": lambda: spec().get("healthcheck"),
            "envs": lambda: [f"{k}={v}" for k, v in (spec().get("env") or {}).items()],
        }

    def __getitem__(self, key: str) -> Any:
        value = self._fields[key]()  # KeyError for a field a task does not have (networkMode, volumes, ...)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self):
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def container_view(props: Mapping[str, Any], name: str) -> TaskView:
    return TaskView(props, name)


class _TaskArgs:
    """A Service's validation args with its task as the props (everything else passes through)."""

    def __init__(self, args: ResourceValidationArgs):
        self._args = args
        self.props = container_view(args.props, args.name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._args, attribute)


# --- Rules -------------------------------------------------------------------------------------------
def _containers(validate: Callable[[ResourceValidationArgs, ReportViolation], None]) -> Callable:
    def only_containers(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type == CONTAINER:
            validate(args, report_violation)
    return only_containers


def _tasks(validate: Callable[[ResourceValidationArgs, ReportViolation], None]) -> Callable:
    """A container rule that also judges each Swarm service's task (container_view)."""
    def containers_and_services(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type == CONTAINER:
            validate(args, report_violation)
        elif args.resource_type == SERVICE:
            validate(_TaskArgs(args), report_violation)  # type: ignore[arg-type]
    return containers_and_services


@_tasks
def _no_public_data_ports(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    env = environment(args.urn)
    if env not in STRICT:
        return
    evidence = data_service_evidence(args.props)
    if not evidence:
        return
    name = args.props.get("name")
    if _published(args.props):
        report_violation(f"{name}: a data service ({'; '.join(evidence)}) publishes a port in {env}", None)
    if _network_mode(args.props) == "host":
        report_violation(f"{name}: a data service ({'; '.join(evidence)}) uses the host's network in {env}", None)


@_tasks
def _dev_ports_on_loopback(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if environment(args.urn) != "dev":
        return
    name = args.props.get("name")
    for port in _published(args.props):
        if bind_address(port) != LOOPBACK:
            report_violation(f"{name}: port {port.get('external')} is published on {bind_address(port)}, not {LOOPBACK}", None)
    if _network_mode(args.props) == "host":
        report_violation(f"{name}: uses the host's network, so it listens on every host address, not only {LOOPBACK}", None)


@_containers
def _operability(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    name = args.props.get("name")
    if not (args.props.get("healthcheck") or {}).get("tests"):
        report_violation(f"{name}: no healthcheck", None)
    if args.props.get("restart") in (None, "", "no"):
        report_violation(f"{name}: no restart policy", None)
    options = args.props.get("logOpts") or {}
    if args.props.get("logDriver") not in ("json-file", "local") or not options.get("max-size") or not options.get("max-file"):
        report_violation(f"{name}: logs are not rotated (json-file with max-size and max-file)", None)


IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$")


@_tasks
def _images_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    image = args.props.get("image") or ""
    env = environment(args.urn)
    if re.fullmatch(r"sha256:[a-f0-9]{64}", image):  # a locally built image, by id
        return
    match = IMAGE.match(image)
    tag, digest = (match["tag"], match["digest"]) if match else (None, None)
    required = args.get_config().get("digestRequiredIn", ["prod"])
    if env in required and not digest:
        report_violation(f"{args.props.get('name')}: image {image} is not pinned by digest (required in {env})", None)
    elif env != "dev" and not digest and (not tag or tag == "latest"):
        report_violation(f"{args.props.get('name')}: image {image} is not pinned to a version", None)


def _volumes_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    env = environment(args.urn)
    if args.resource_type == VOLUME and env in STRICT and not args.opts.protect:
        report_violation(f"{args.props.get('name')}: data volume in {env} is not protected", None)


SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|_PASS$|SECRET|TOKEN|API_KEY|PRIVATE_KEY)", re.I)
# The password of a URL with credentials (scheme://user:password@host). Every part stops at a character
# it cannot hold (RFC 3986: no '/', '?', '#' or '@' in userinfo), and a scheme starts only where no
# scheme character precedes it: matching is linear in the text's length, whatever the text (a value
# of many `a://x:` pieces with no '@' took the previous form quadratic time: 16 s for 64 KiB).
URL_CREDENTIALS = re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^:/@\s?#]*:([^@\s/?#]*)@", re.I)
# Values longer than this are not read (a Swarm secret holds less than 500 KiB; no setting needs
# more than 64 KiB): such a value is reported instead.
MAX_JUDGED_LENGTH = 512 * 1024
WEAK = {"password", "changeme", "secret", "postgres", "guest", "admin", "root", "test", "example", "123456"}
MIN_SECRET_LENGTH = 16


def _weak(value: str) -> bool:
    return len(value) < MIN_SECRET_LENGTH or value.lower() in WEAK


def _plain_texts(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, text) of the container's inputs other than its environment that can carry a URL."""
    texts = [(f"label {k}", v) for k, v in labels(props).items()]
    texts += [("command", part) for part in props.get("command") or []]
    texts += [("entrypoint", part) for part in props.get("entrypoints") or []]
    texts += [("healthcheck", part) for part in (props.get("healthcheck") or {}).get("tests") or []]
    return [(where, text) for where, text in texts if isinstance(text, str)]


@_tasks
def _no_plaintext_secrets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    name = args.props.get("name")
    for entry in args.props.get("envs") or []:
        key, _, value = str(entry).partition("=")
        if len(value) > MAX_JUDGED_LENGTH:
            report_violation(f"{name}: {key} holds {len(value)} characters, more than any setting needs (not read further)", None)
        elif SECRET_NAME.search(key) and value and _weak(value):
            report_violation(f"{name}: {key} holds a hard-coded or weak value, not a generated or stack secret", None)
        elif any(_weak(password) for password in URL_CREDENTIALS.findall(value)):
            report_violation(f"{name}: {key} embeds a hard-coded or weak password", None)
    for where, text in _known(lambda: _plain_texts(args.props), []):
        if URL_CREDENTIALS.search(text):
            report_violation(f"{name}: the {where} embeds a URL with a password (visible to anyone who can inspect the container)", None)


@_tasks
def _tls_on(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    env = environment(args.urn)
    if env not in STRICT:
        return
    evidence = gateway_evidence(args.props, env)
    if not evidence:
        return
    ports = _published(args.props)
    https = {bind_address(p) for p in ports if _port(p.get("internal")) == HTTPS_CONTAINER_PORT}
    public = {bind_address(p) for p in ports if bind_address(p) != LOOPBACK}
    name = args.props.get("name")
    if not https:
        report_violation(f"{name}: an entry point ({'; '.join(evidence)}) serves no HTTPS in {env}", None)
    elif public - https:
        report_violation(f"{name}: publishes on {', '.join(sorted(public - https))} without HTTPS there in {env}", None)


def _data_services_internal(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    internal = {r.props.get("name"): bool(r.props.get("internal")) for r in args.resources if r.resource_type == NETWORK}
    for resource in args.resources:
        if resource.resource_type != CONTAINER:
            continue
        evidence = data_service_evidence(resource.props)
        if not evidence:
            continue
        name, why = resource.props.get("name"), "; ".join(evidence)
        mode = _network_mode(resource.props)
        networks = [n.get("name") for n in resource.props.get("networksAdvanced") or []]
        if mode not in ("", "bridge", "default", "none") and not internal.get(mode, False):
            report_violation(f"{name}: data service ({why}) in network mode {mode}, not an internal network", resource.urn)
        elif not networks and mode != "none":
            report_violation(f"{name}: data service ({why}) on Docker's default bridge network, which is not internal", resource.urn)
        for network in networks:
            if not internal.get(network, False):
                report_violation(f"{name}: data service ({why}) on non-internal network {network}", resource.urn)


# --- Swarm services -----------------------------------------------------------------------------------
def _services(validate: Callable[[ResourceValidationArgs, ReportViolation], None]) -> Callable:
    def only_services(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type == SERVICE:
            validate(args, report_violation)
    return only_services


def _at(value: Any, *keys: str) -> Any:
    """value[keys[0]][keys[1]]..., None where a level is missing."""
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _service_name(args: ResourceValidationArgs) -> str:
    return _known(lambda: args.props.get("name")) or args.name


GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def duration_seconds(value: Any) -> Optional[float]:
    """A Go duration (`10s`, `1m30s`, `500ms`, `0`) in seconds; None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    if value == "0":
        return 0.0
    parts = GO_DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * GO_DURATION_UNITS[unit] for number, unit in parts)


def replicas_of(props: Mapping[str, Any]) -> Optional[int]:
    """The replica count of a replicated service (the provider's default is 1); None for a global one."""
    mode = props.get("mode") or {}
    if mode.get("global"):
        return None
    return _port((mode.get("replicated") or {}).get("replicas", 1))


@_services
def _replicas_spread(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    env = environment(args.urn)
    if env not in args.get_config().get("spreadRequiredIn", ["prod"]):
        return
    replicas = _known(lambda: replicas_of(args.props))
    if replicas is None or replicas < 2:
        return
    limit = _known(lambda: _port(_at(args.props, "taskSpec", "placement", "maxReplicas")) or 0)
    if limit is None:
        return
    name = _service_name(args)
    if limit <= 0:
        report_violation(f"{name}: {replicas} replicas and no limit per node (taskSpec.placement.maxReplicas): one node "
                         f"can hold them all, and its loss stops the service, in {env}; at most {replicas - 1} per node", None)
    elif limit >= replicas:
        report_violation(f"{name}: at most {limit} per node lets one node hold all {replicas} replicas in {env}; "
                         f"at most {replicas - 1} per node", None)


@_services
def _rollback_on_failure(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    env = environment(args.urn)
    if env not in STRICT:
        return
    name = _service_name(args)
    update = _known(lambda: args.props.get("updateConfig") or {})
    if update is None:
        return
    # What Swarm does when the provider sends nothing: pause on failure, stop-first.
    failure = _known(lambda: update.get("failureAction") or "pause")
    order = _known(lambda: update.get("order") or "stop-first")
    ratio = _known(lambda: float(update.get("maxFailureRatio") or 0))
    if failure is not None and failure != "rollback":
        report_violation(f"{name}: a failed update is left as it is (updateConfig.failureAction {failure}), not rolled back, in {env}", None)
    elif ratio is not None and ratio >= 1:
        report_violation(f"{name}: updateConfig.maxFailureRatio {ratio:g} tolerates every failure, so nothing is ever rolled back, in {env}", None)
    if order is not None and order != "start-first":
        report_violation(f"{name}: an update stops a task before its replacement is healthy (updateConfig.order {order}, "
                         f"not start-first), so the service runs below its size, in {env}", None)


def _rotated(log: Mapping[str, Any]) -> bool:
    options = log.get("options") or {}
    return log.get("name") in ("json-file", "local") and bool(options.get("max-size")) and bool(options.get("max-file"))


@_services
def _service_operability(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    name = _service_name(args)
    task = _known(lambda: args.props.get("taskSpec") or {}, {})
    tests = _known(lambda: list(_at(task, "containerSpec", "healthcheck", "tests") or []), ["unknown"])
    if not tests or tests[0] == "NONE":
        report_violation(f"{name}: no healthcheck, so a rolling update cannot wait for a healthy task", None)
    restart = _known(lambda: task.get("restartPolicy"), {})
    if not restart or _known(lambda: restart.get("condition")) == "none":
        report_violation(f"{name}: no restart policy (taskSpec.restartPolicy)", None)
    else:
        delay = _known(lambda: restart.get("delay"), "unknown")
        if delay != "unknown" and not (duration_seconds(delay) or 0) > 0:
            report_violation(f"{name}: restarts a failed task without a delay (taskSpec.restartPolicy.delay {delay or 'unset'}): "
                             "a crashing task restarts in a tight loop", None)
    if not _known(lambda: _rotated(task.get("logDriver") or {}), True):
        report_violation(f"{name}: logs are not rotated (taskSpec.logDriver json-file with max-size and max-file)", None)
    grace = _known(lambda: _at(task, "containerSpec", "stopGracePeriod"), "unknown")
    if grace != "unknown" and not (duration_seconds(grace) or 0) > 0:
        report_violation(f"{name}: no stop grace period (taskSpec.containerSpec.stopGracePeriod {grace or 'unset'}): the provider "
                         "sends 0s, so a stopping task is killed right after SIGTERM", None)


# A variable whose name says it holds a credential; `<NAME>_FILE` holding a path is the way to pass one.
SERVICE_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|_PASS$|^PASS$|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|(^|_)DSN$)", re.I)
FILE_POINTER = re.compile(r"^/[^\s:@]*$")
# key=value credentials inside a value (OTLP headers, query strings, connection strings) and HTTP auth.
# key=value pieces of a value (each key starts after a separator, so finding them is linear), whose key
# names a credential; and HTTP authorization schemes with their token.
KEY_VALUE = re.compile(r"(?:^|(?<=[\s,;&?]))([\w.-]+)\s*[=:]\s*[^\s,;&]")
CREDENTIAL_KEY = re.compile(r"password|passwd|pwd|secret|token|api[-_]?key|apikey|authorization", re.I)
AUTHORIZATION = re.compile(r"\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.I)


def embeds_credential(value: str) -> bool:
    """Whether a value holds a `key=value` credential or an HTTP authorization."""
    return any(CREDENTIAL_KEY.search(match[1]) for match in KEY_VALUE.finditer(value)) or bool(AUTHORIZATION.search(value))


MIN_MATCHED_SECRET = 8


def swarm_secrets(resources: list) -> dict[str, tuple[str, str]]:
    """Every Swarm secret the stack declares, by each way a service names it (id, name, logical name):
    (label, decoded value). Values stay in memory: they are compared, never reported."""
    found: dict[str, tuple[str, str]] = {}
    for resource in resources:
        if resource.resource_type != SWARM_SECRET:
            continue
        data = _known(lambda resource=resource: resource.props.get("data"))
        if not isinstance(data, str) or not data:
            continue
        try:
            value = base64.b64decode(data, validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            value = data
        if len(value) > MAX_JUDGED_LENGTH:  # more than Swarm holds (500 KiB): it refuses such a secret itself
            continue
        label = _known(lambda resource=resource: resource.props.get("name")) or resource.name
        for reference in {resource.name, label, _known(lambda resource=resource: resource.props.get("id")) or ""} - {""}:
            found[reference] = (label, value)
    return found


def _swarm_secret_values(resources: list) -> dict[str, str]:
    """The value of each Swarm secret the stack declares (and the password of each URL among them),
    found in memory only, to recognise one copied into an environment."""
    values: dict[str, str] = {}
    for label, value in swarm_secrets(resources).values():
        for candidate in [value, *URL_CREDENTIALS.findall(value)]:
            if len(candidate) >= MIN_MATCHED_SECRET:
                values[candidate] = label
    return values


def env_secret_problems(env: Mapping[str, Any], secret_values: Mapping[str, str]) -> list[str]:
    """Why each variable of a service's environment carries a credential (empty: none does)."""
    problems = []
    for key, value in sorted(env.items()):
        value = "" if value is None else str(value)
        if len(value) > MAX_JUDGED_LENGTH:
            problems.append(f"{key} holds {len(value)} characters, more than any setting needs (not read further)")
            continue
        if key.endswith("_FILE") and FILE_POINTER.match(value):
            continue  # the pointer form: the value is read from a mounted file
        copied = sorted({label for secret, label in secret_values.items() if secret in value})
        if URL_CREDENTIALS.search(value):
            problems.append(f"{key} embeds a URL with a password")
        elif copied:
            problems.append(f"{key} holds the value of Swarm secret {', '.join(copied)}")
        elif embeds_credential(value):
            problems.append(f"{key} embeds a credential")
        elif SERVICE_SECRET_NAME.search(key) and value:
            problems.append(f"{key} holds a value under a credential's name")
    return problems


DOTENV_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(?:'([^']*)'|(.*))")


def config_text(props: Mapping[str, Any]) -> Optional[str]:
    """The content of a Swarm config (`data` is base64, `dataRaw` plain), None while unknown."""
    data = props.get("data")
    if isinstance(data, str):
        try:
            return base64.b64decode(data, validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return data
    raw = props.get("dataRaw")
    return raw if isinstance(raw, str) else None


def dotenv_variables(text: str) -> dict[str, str]:
    """The KEY='value' / KEY=value lines of a dotenv file (what a service's env file holds)."""
    found = {}
    for line in text.splitlines():
        match = DOTENV_LINE.fullmatch(line)
        if match:
            found[match.group(1)] = match.group(2) if match.group(2) is not None else match.group(3)
    return found


def _no_env_secrets(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    secret_values: Optional[dict[str, str]] = None
    for resource in args.resources:
        if resource.resource_type == SWARM_CONFIG and environment(resource.urn) in STRICT:
            # A Swarm config (a service's env file, say) is plain text to anyone who can `docker config inspect` it.
            if secret_values is None:
                secret_values = _swarm_secret_values(args.resources)
            text = _known(lambda resource=resource: config_text(resource.props))
            if text is None:
                continue
            name = _known(lambda resource=resource: resource.props.get("name")) or resource.name
            problems = env_secret_problems(dotenv_variables(text), secret_values)
            if not problems and URL_CREDENTIALS.search(text):
                problems = ["its content embeds a URL with a password"]
            for problem in problems:
                report_violation(f"{name} (Swarm config): {problem}, readable by anyone who can `docker config inspect` it, in "
                                 f"{environment(resource.urn)}: mount it as a Swarm secret and pass its path in <NAME>_FILE",
                                 resource.urn)
            continue
        if resource.resource_type != SERVICE:
            continue
        env = environment(resource.urn)
        if env not in STRICT:
            continue
        if secret_values is None:
            secret_values = _swarm_secret_values(args.resources)
        variables = _known(lambda resource=resource: dict(_at(resource.props, "taskSpec", "containerSpec", "env") or {}), {})
        name = _known(lambda resource=resource: resource.props.get("name")) or resource.name
        for problem in env_secret_problems(variables, secret_values):
            report_violation(f"{name}: {problem}, readable by anyone who can `docker service inspect` it, in {env}: "
                             "mount it as a Swarm secret and pass its path in <NAME>_FILE", resource.urn)


# --- Alerts reach a person -----------------------------------------------------------------------------
ALERTMANAGER_FILE = "alertmanager.yml"
# Alertmanager's receiver integrations: a receiver without any of these notifies no one.
INTEGRATIONS = ("webhook_configs", "slack_configs", "pagerduty_configs", "email_configs", "opsgenie_configs", "victorops_configs",
                "pushover_configs", "wechat_configs", "telegram_configs", "sns_configs", "discord_configs", "webex_configs",
                "msteams_configs")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*')
# What a page is: a critical alert that is not the Watchdog (any name the routes do not single out).
CRITICAL_PROBE = {"alertname": "carecircle-policy-probe", "severity": "critical"}


def _matcher(text: str, labels: Mapping[str, str]) -> bool:
    found = MATCHER.fullmatch(text)
    if not found:
        return False
    name, op, quoted, bare = found.groups()
    value = (quoted.encode().decode("unicode_escape") if quoted is not None else bare) or ""
    actual = labels.get(name, "")
    if op in ("=~", "!~"):
        hit = re.fullmatch(value, actual) is not None
        return hit if op == "=~" else not hit
    return (actual == value) if op == "=" else (actual != value)


def _route_matches(route: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    matchers = list(route.get("matchers") or [])
    matchers += [f'{k}="{v}"' for k, v in (route.get("match") or {}).items()]
    matchers += [f'{k}=~"{v}"' for k, v in (route.get("match_re") or {}).items()]
    return all(_matcher(m, labels) for m in matchers)


def route_receivers(route: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """The receivers Alertmanager notifies for an alert with these labels: the routing tree walked as
    Alertmanager does (children in order, the first that matches unless it continues; a route whose
    children all miss keeps the alert; receivers inherited)."""
    def walk(node: Mapping[str, Any], inherited: Optional[str]) -> list[str]:
        receiver = node.get("receiver") or inherited
        found: list[str] = []
        for child in node.get("routes") or []:
            if _route_matches(child, labels):
                found += walk(child, receiver)
                if not child.get("continue"):
                    break
        return found or ([receiver] if receiver else [])
    return walk(route, None)


def alertmanager_configs(resources: list) -> list[tuple[Any, dict]]:
    """(resource, parsed alertmanager.yml) of every command that ships one in its stdin bundle (a base64
    tar, as the apply scripts take it). A value a preview does not know yet is skipped."""
    found = []
    for resource in resources:
        if resource.resource_type != COMMAND:
            continue
        stdin = _known(lambda resource=resource: resource.props.get("stdin"))
        if not isinstance(stdin, str) or not stdin:
            continue
        try:
            with tarfile.open(fileobj=io.BytesIO(base64.b64decode(stdin, validate=True))) as tar:
                member = next((m for m in tar.getmembers() if posixpath.basename(m.name) == ALERTMANAGER_FILE and m.isfile()), None)
                text = tar.extractfile(member).read().decode() if member else None  # type: ignore[union-attr]
        except (binascii.Error, tarfile.TarError, ValueError, UnicodeDecodeError):
            continue
        if text is not None:
            try:
                found.append((resource, yaml.safe_load(text) or {}))
            except yaml.YAMLError:
                found.append((resource, {}))
    return found


def _runs_prometheus(props: Mapping[str, Any]) -> bool:
    return _known(lambda: image_repository(props.get("image"))) == "prometheus" or "prometheus" in _known(lambda: _executables(props), set())


def _alerts_reach_a_person(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    prometheus = [r for r in args.resources if r.resource_type == CONTAINER and environment(r.urn) == "prod" and _runs_prometheus(r.props)]
    if not prometheus:
        return
    configs = alertmanager_configs(args.resources)
    if not configs:
        names = ", ".join(sorted(str(r.props.get("name") or r.name) for r in prometheus))
        report_violation(f"{names}: Prometheus runs in prod but no Alertmanager configuration is applied: its alerts reach no one", None)
    for resource, config in configs:
        receivers = {r.get("name"): r for r in config.get("receivers") or [] if isinstance(r, Mapping)}
        paged = [name for name in route_receivers(config.get("route") or {}, CRITICAL_PROBE)
                 if any((receivers.get(name) or {}).get(kind) for kind in INTEGRATIONS)]
        if not paged:
            report_violation(f"{resource.name}: in prod a critical alert reaches no receiver that notifies anyone "
                             "(set a receiver: carecircle:alertPagerdutyRoutingKey, alertSlackWebhookUrl, alertWebhookUrl or alertEmailTo)",
                             resource.urn)


def _monitored(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    stacks = {environment(r.urn) for r in args.resources}
    strict = sorted(stacks & set(STRICT))
    if not strict:
        return
    if not any(r.resource_type == CONTAINER and _runs_prometheus(r.props) for r in args.resources):
        report_violation(f"{strict[0]} runs no Prometheus: no alert fires (api down, errors, a full queue, an expiring certificate)", None)
    elif not alertmanager_configs(args.resources):
        report_violation(f"{strict[0]} applies no Alertmanager configuration: Prometheus's alerts reach no one", None)


# --- What staging and prod must be, read from what they declare ----------------------------------------
# (The settings refuse the same config: settings/data.py, runtime.py, monitoring.py, gateway.py.)
ENCRYPTED_SSLMODES = ("require", "verify-ca", "verify-full")
CLEAR_SCHEMES = {"redis": "rediss", "amqp": "amqps", "http": "https"}
URL = re.compile(r"(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*)://([^/?#\s]*)([^\s]*)", re.I)
TRACING_VARIABLE = re.compile(r"(^OTEL_.*ENDPOINT$|_DSN$|^SENTRY)")


def clear_connections(text: str, internal_hosts: set[str]) -> list[str]:
    """Why each URL in `text` travels in clear (empty: none does): a data service's URL without TLS, an
    http:// URL with credentials. A URL to a container of the stack itself stays on its own network."""
    problems = []
    for match in URL.finditer(text):
        scheme, authority, rest = match[1].lower(), match[2], match[3]
        host = authority.rpartition("@")[2].rsplit(":", 1)[0].strip("[]").lower()
        if host in internal_hosts:
            continue
        if scheme in ("postgres", "postgresql"):
            sslmode = dict(parse_qsl(rest.partition("?")[2])).get("sslmode")
            if sslmode not in ENCRYPTED_SSLMODES:
                problems.append(f"a {scheme}:// URL " + (f"with sslmode={sslmode}" if sslmode else "without sslmode") +
                                " (may connect without TLS)")
        elif scheme in ("redis", "amqp"):
            problems.append(f"a {scheme}:// URL (clear text; {CLEAR_SCHEMES[scheme]}:// is TLS)")
        elif scheme == "http" and "@" in authority:
            problems.append("an http:// URL with credentials")
    return problems


def _container_names(resources: list) -> set[str]:
    names = set()
    for resource in resources:
        if resource.resource_type == CONTAINER:
            name = _known(lambda resource=resource: resource.props.get("name"))
            if isinstance(name, str):
                names.add(name.lower())
    return names


def _env_of(resource: Any) -> dict[str, str]:
    """A container's or Swarm service's environment, or the variables of a Swarm config (a service's env file)."""
    if resource.resource_type == SWARM_CONFIG:
        return dotenv_variables(_known(lambda: config_text(resource.props)) or "")
    if resource.resource_type == SERVICE:
        return {k: str(v) for k, v in (_known(lambda: _at(resource.props, "taskSpec", "containerSpec", "env"), {}) or {}).items()}
    return dict(str(entry).partition("=")[::2] for entry in _known(lambda: resource.props.get("envs"), []) or [])


def _encrypted_connections(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    internal = _container_names(args.resources)
    for resource in args.resources:
        env = environment(resource.urn)
        if env not in STRICT:
            continue
        name = _known(lambda resource=resource: resource.props.get("name")) or resource.name
        if resource.resource_type == SWARM_SECRET:
            value = next((value for label, value in swarm_secrets([resource]).values()), "")
            for problem in clear_connections(value, internal):
                report_violation(f"Swarm secret {name} holds {problem}, in {env}", resource.urn)
        elif resource.resource_type in (SERVICE, CONTAINER, SWARM_CONFIG):
            for key, value in sorted(_env_of(resource).items()):
                if len(value) > MAX_JUDGED_LENGTH:
                    continue  # reported by the secrets rules
                problems = clear_connections(value, internal)
                if TRACING_VARIABLE.search(key) and value.lower().startswith("http://"):
                    problems.append("a tracing endpoint over http:// (request paths and timings in clear)")
                for problem in problems:
                    report_violation(f"{name}: {key} holds {problem}, in {env}", resource.urn)


RESTARTING = ("always", "unless-stopped")


def _production_runtime(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    env = environment(args.urn)
    if env not in STRICT or args.resource_type not in (CONTAINER, SERVICE, SWARM_CONFIG):
        return
    name = _known(lambda: args.props.get("name")) or args.name
    node_env = _env_of(args).get("NODE_ENV")
    if node_env not in (None, "production"):
        report_violation(f"{name}: NODE_ENV={node_env}, not production, in {env}", None)
    if args.resource_type == CONTAINER and _known(lambda: args.props.get("restart"), "always") not in RESTARTING:
        report_violation(f"{name}: restart policy {args.props.get('restart') or 'unset'} leaves it stopped after some exits, "
                         f"in {env}: {' or '.join(RESTARTING)}", None)
    if args.resource_type == SERVICE and _known(lambda: _at(args.props, "taskSpec", "restartPolicy", "condition")) == "on-failure":
        report_violation(f"{name}: restart condition on-failure leaves a task that exited 0 stopped, in {env}: any", None)


CORS_MAP = re.compile(r"map \$http_origin \$carecircle_cors_origin \{(?P<body>[^}]*)\}")
CORS_CREDENTIALS = re.compile(r"map \$carecircle_cors_origin \$carecircle_cors_credentials \{\s*default \"true\";")
CORS_KEY = re.compile(r'^\s*"(?P<origin>[^"]+)"\s+\$http_origin;', re.M)
# An HTTPS pattern whose host ends in a literal domain (`tail`: \.carecircle\.example), or is literal throughout.
PINNED_PATTERN = re.compile(r"\^https://.*?(?P<tail>(?:\\\.[a-z0-9-]+){2,})(?::[0-9]+)?\$|\^https://(?:[a-z0-9-]+|\\\.)+(?::[0-9]+)?\$", re.I)


@functools.cache
def public_suffixes() -> PublicSuffixList:
    """The Public Suffix List the package ships: co.uk or github.io is a suffix anyone registers under, as .com is."""
    return PublicSuffixList()


def pinned_to_one_domain(pattern: str) -> bool:
    """Whether every origin an HTTPS pattern matches is in one domain someone holds (not a public suffix)."""
    match = PINNED_PATTERN.fullmatch(pattern)
    if match is None:
        return False
    tail = match["tail"]
    return tail is None or public_suffixes().privatesuffix(tail.replace("\\", "")[1:].lower()) is not None


# An exact origin as the gateway writes it (rendering.cors_origin_regex): anchored, every metacharacter escaped.
EXACT_ORIGIN_KEY = re.compile(r"~\^((?:[^.^$*+?()\[\]{}|\\]|\\[.^$*+?()\[\]{}|\\])*)\$")


def _origin_of(key: str) -> str:
    """A map key as the origin it stands for: an exact origin unescaped, a pattern as written (~...)."""
    exact = EXACT_ORIGIN_KEY.fullmatch(key)
    return re.sub(r"\\(.)", r"\1", exact[1]) if exact else key


def cors_origins_with_credentials(bundle: str) -> list[str]:
    """The CORS origins a gateway configuration bundle (base64 tar) sends credentials to."""
    origins = []
    for text in _bundle_texts(bundle):
        cors = CORS_MAP.search(text)
        if cors and CORS_CREDENTIALS.search(text):
            origins += [_origin_of(match["origin"]) for match in CORS_KEY.finditer(cors["body"])]
    return origins


def _bundle_texts(bundle: Any) -> list[str]:
    if not isinstance(bundle, str) or len(bundle) > MAX_JUDGED_LENGTH:
        return []
    try:
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(bundle, validate=True))) as tar:
            return [handle.read().decode("utf-8", "replace") for member in tar.getmembers()
                    if (handle := tar.extractfile(member)) is not None]
    except (binascii.Error, ValueError, tarfile.TarError, EOFError):
        return []


def _credentials_to_owned_https_origins(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    env = environment(args.urn)
    if args.resource_type != COMMAND or env not in STRICT:
        return
    for origin in cors_origins_with_credentials(_known(lambda: args.props.get("stdin"), "")):
        if origin.startswith("~"):
            if not pinned_to_one_domain(origin[1:]):
                report_violation(f"{args.name}: the gateway sends credentials to the origins of {origin}, which matches hosts "
                                 f"outside one HTTPS domain (a wildcard of origins), in {env}", None)
        elif not origin.startswith("https://"):
            report_violation(f"{args.name}: the gateway sends credentials to {origin}, not an HTTPS origin, in {env}", None)


POLICIES = [
    ResourceValidationPolicy(name="no-public-data-ports", description="No data-service port is published in staging or prod.",
                             validate=_no_public_data_ports),
    ResourceValidationPolicy(name="dev-ports-on-loopback", description="In dev every published port is bound to 127.0.0.1.",
                             validate=_dev_ports_on_loopback),
    ResourceValidationPolicy(name="container-operability", description="Every container has a healthcheck, a restart policy and log rotation.",
                             validate=_operability),
    ResourceValidationPolicy(
        name="images-pinned",
        description="Images are pinned: no latest or untagged outside dev, and by digest where configured (prod by default).",
        validate=_images_pinned,
        config_schema=PolicyConfigSchema(properties={
            "digestRequiredIn": {"type": "array", "items": {"type": "string"}, "default": ["prod"]},
        }),
    ),
    ResourceValidationPolicy(name="data-volumes-protected", description="Data volumes are protected in staging and prod.",
                             validate=_volumes_protected),
    StackValidationPolicy(name="data-services-internal-only", description="Data services are only on internal networks.",
                          validate=_data_services_internal),
    ResourceValidationPolicy(name="no-plaintext-secrets",
                             description="No hard-coded or weak secret-looking value in a container's environment, "
                                         "and no URL with a password in its labels, command or healthcheck.",
                             validate=_no_plaintext_secrets),
    ResourceValidationPolicy(name="tls-on", description="The gateway (any entry point) serves HTTPS in staging and prod.",
                             validate=_tls_on, enforcement_level=EnforcementLevel.MANDATORY),
    ResourceValidationPolicy(
        name="swarm-replicas-spread",
        description="A replicated Swarm service with 2+ replicas has a per-node limit below its replicas (where configured: prod by default).",
        validate=_replicas_spread,
        config_schema=PolicyConfigSchema(properties={
            "spreadRequiredIn": {"type": "array", "items": {"type": "string"}, "default": ["prod"]},
        }),
    ),
    ResourceValidationPolicy(name="swarm-rollback-on-failure",
                             description="In staging and prod a Swarm service updates start-first and rolls a failed update back.",
                             validate=_rollback_on_failure),
    StackValidationPolicy(name="swarm-no-env-secrets",
                          description="In staging and prod no Swarm service's environment, and no Swarm config (a service's env "
                                      "file), holds a credential; <NAME>_FILE points to a Swarm secret.",
                          validate=_no_env_secrets),
    StackValidationPolicy(name="encrypted-connections",
                          description="In staging and prod data services are reached over TLS (sslmode, rediss://, amqps://), "
                                      "and no credential or trace travels over http://.",
                          validate=_encrypted_connections),
    ResourceValidationPolicy(name="production-runtime",
                             description="In staging and prod apps run with NODE_ENV=production (env or env file) and every "
                                         "container or task restarts whatever stopped it.",
                             validate=_production_runtime),
    ResourceValidationPolicy(name="cors-credentials-owned-origins",
                             description="In staging and prod the gateway sends CORS credentials only to HTTPS origins of one domain.",
                             validate=_credentials_to_owned_https_origins),
    ResourceValidationPolicy(name="service-operability",
                             description="Every Swarm service has a healthcheck, a restart policy with a delay, log rotation and a stop grace period.",
                             validate=_service_operability),
    StackValidationPolicy(name="alerts-reach-a-person",
                          description="In prod, where Prometheus runs, an Alertmanager configuration sends a critical alert to a receiver "
                                      "that notifies someone.",
                          validate=_alerts_reach_a_person),
    StackValidationPolicy(name="monitoring-on",
                          description="In staging and prod Prometheus runs and an Alertmanager configuration is applied.",
                          validate=_monitored),
]
