"""The swarm part of the declared-environment report (carecircle:platform swarm): the Swarm services
with their rollout, placement, resources and secrets; the node each plain container runs on; the
Swarm secrets and the secrets that travel another way; a diagram of what each node exposes.

Everything is read from what the stack declares (the offline evaluation), never from labels alone:
a service's networks are its network ids mapped back to the Network resources, a secret's mount is
its secret reference mapped back to the Secret resource, a container's node is the `host` of the
docker provider it is created through. Secret values are never included: a secret's source is found
by comparing values in memory, and only its name is kept.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import tarfile
from typing import Any, Iterable, Optional

from ..components.certificate import ACME_CERTIFICATE_TYPE
from ..offline import DeclaredResource, Evaluation
from ..settings import COLORS, SECRET_FIELDS, Settings, full_key

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
NETWORK = "docker:index/network:Network"
PROVIDER = "pulumi:providers:docker"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
SECRETS_DIR = "/run/secrets"
FILE_SUFFIX = "_FILE"
MEBIBYTE = 1024 * 1024


def _int(value: Any) -> Any:
    """Numbers arrive from the engine (and the mocks) as floats."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _labels(resource: DeclaredResource) -> dict[str, str]:
    return {item["label"]: item["value"] for item in resource.inputs.get("labels") or []}


def docker_name(resource: DeclaredResource) -> str:
    """The name Docker knows the resource by: the program's, or the one Pulumi generated."""
    return resource.inputs.get("name") or resource.autoname or resource.name


# --- Nodes -------------------------------------------------------------------------------------------

def default_host(settings: Settings) -> str:
    return settings.docker_host or "local engine (DOCKER_HOST or /var/run/docker.sock)"


def node_of(evaluation: Evaluation, resource: DeclaredResource, settings: Settings) -> str:
    """The Docker host a resource is created through: its provider's `host`, or docker:host for the
    default provider (on a swarm stack, the manager)."""
    if not resource.provider:
        return default_host(settings)
    urn = resource.provider.rsplit("::", 1)[0]
    provider = next((r for r in evaluation.resources if r.urn == urn), None)
    if provider is None or provider.type != PROVIDER:
        return f"unknown provider {urn}"
    return provider.inputs.get("host") or default_host(settings)


def short_host(host: str) -> str:
    """`ssh://deploy@edge-1.prod.example:22` -> `edge-1.prod.example`."""
    rest = host.split("://", 1)[-1]
    return rest.rpartition("@")[2].split(":", 1)[0].split("/", 1)[0] or host


# --- Networks and secrets, by the ids services hold --------------------------------------------------

def networks_by_reference(evaluation: Evaluation) -> dict[str, DeclaredResource]:
    """Every way a service can name a network (id, or the deprecated name) -> the Network resource."""
    found: dict[str, DeclaredResource] = {}
    for network in evaluation.of_type(NETWORK):
        found[network.id] = network
        found[docker_name(network)] = network
    return found


def _secrets_by_reference(evaluation: Evaluation, type_: str = SECRET) -> dict[str, DeclaredResource]:
    found: dict[str, DeclaredResource] = {}
    for secret in evaluation.of_type(type_):
        found[secret.id] = secret
        found[docker_name(secret)] = secret
    return found


def _mount_path(file_name: str) -> str:
    return file_name if file_name.startswith("/") else f"{SECRETS_DIR}/{file_name}"


def _secret_mounts(inputs: dict[str, Any], by_reference: dict[str, DeclaredResource]) -> list[dict[str, Any]]:
    mounts = []
    for ref in inputs.get("taskSpec", {}).get("containerSpec", {}).get("secrets") or []:
        resource = by_reference.get(ref.get("secretId") or "") or by_reference.get(ref.get("secretName") or "")
        mounts.append({
            "secret": resource.name if resource else None,  # None: a secret this stack does not declare
            "secret_name": ref.get("secretName") or (docker_name(resource) if resource else ref.get("secretId")),
            "file": _mount_path(ref.get("fileName") or ref.get("secretName") or ""),
        })
    return sorted(mounts, key=lambda m: m["file"])


# --- Services ------------------------------------------------------------------------------------------

def _identity(resource: DeclaredResource, settings: Settings) -> tuple[str, str, Optional[str]]:
    """(report key, role, pool) of a service: from the program's own names, else from its labels."""
    for color in COLORS:
        if resource.name == settings.docker_name("api", color):
            return f"api-{color}", "api", color
    if resource.name == settings.docker_name("workers"):
        return "workers", "workers", None
    labels = _labels(resource)
    role, pool = labels.get("com.carecircle.role"), labels.get("com.carecircle.color")
    return resource.name, role or "unknown", pool


def _cpus(nano: Any) -> Optional[str]:
    return None if nano in (None, 0) else f"{float(nano) / 1e9:g}"


def _mb(memory_bytes: Any) -> Optional[int]:
    return None if memory_bytes in (None, 0) else int(float(memory_bytes) // MEBIBYTE)


def _rollout(config: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if not config:
        return None
    return {
        "order": config.get("order", "stop-first"),  # Swarm's default
        "parallelism": _int(config.get("parallelism", 1)),
        "delay": config.get("delay", "0s"),
        "monitor": config.get("monitor"),
        "failure_action": config.get("failureAction", "pause"),  # Swarm's default
        "max_failure_ratio": config.get("maxFailureRatio", "0"),
    }


def env_file_variables(config: DeclaredResource) -> dict[str, str]:
    """The variables of a dotenv file held by a Swarm config (KEY='value' or KEY=value lines)."""
    data = config.inputs.get("data")
    text = base64.b64decode(data).decode(errors="replace") if isinstance(data, str) else str(config.inputs.get("dataRaw") or "")
    variables = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(?:'([^']*)'|(.*))", line)
        if match:
            variables[match.group(1)] = match.group(2) if match.group(2) is not None else match.group(3)
    return variables


def _environment(container_spec: dict[str, Any], configs: dict[str, DeclaredResource]) -> dict[str, str]:
    """What a task's process sees: its env, and the variables of the env file it is pointed at
    (DOTENV_CONFIG_PATH naming a mounted Swarm config), which its env overrides."""
    env = {k: str(v) for k, v in (container_spec.get("env") or {}).items()}
    path = env.get("DOTENV_CONFIG_PATH")
    for mount in container_spec.get("configs") or []:
        config = configs.get(mount.get("configId") or "") or configs.get(mount.get("configName") or "")
        if config is not None and mount.get("fileName") == path:
            env = {**env_file_variables(config), **env}
    return env


def _mounted_as(mount: dict[str, Any]) -> str:
    return mount["secret"] or f"{mount['secret_name']} (not declared by this stack)"


def _env(variables: dict[str, str], fragments: set[str], mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mounted = {m["file"]: _mounted_as(m) for m in mounts}
    entries = []
    for name, value in sorted(variables.items()):
        value = str(value)
        entry: dict[str, Any] = {"name": name, "secret": any(fragment in value for fragment in fragments)}
        if name.endswith(FILE_SUFFIX):
            entry["file"] = value if value.startswith("/") else None
            entry["secret_file"] = mounted.get(value)
        entries.append(entry)
    return entries


def _service(resource: DeclaredResource, evaluation: Evaluation, settings: Settings, fragments: set[str],
             networks: dict[str, DeclaredResource], secrets: dict[str, DeclaredResource]) -> dict[str, Any]:
    inputs = resource.inputs
    task = inputs.get("taskSpec") or {}
    spec = task.get("containerSpec") or {}
    mode = inputs.get("mode") or {}
    health = spec.get("healthcheck") or {}
    placement = task.get("placement") or {}
    resources = task.get("resources") or {}
    restart = task.get("restartPolicy") or {}
    log = task.get("logDriver") or {}
    endpoint = inputs.get("endpointSpec") or {}
    converge = inputs.get("convergeConfig") or {}
    gate = next((c for c in evaluation.of_type("command:local:Command") if c.name == f"{resource.name}-rollout"), None)
    mounts = _secret_mounts(inputs, secrets)
    _, role, pool = _identity(resource, settings)
    configs = _secrets_by_reference(evaluation, SERVICE_CONFIG)
    return {
        "name": resource.autoname or inputs.get("name"),  # what Swarm (and `docker service ls`) calls it
        "resource": resource.name,
        "role": role,
        "pool": pool,
        "mode": "global" if "global" in mode else "replicated",
        "replicas": None if "global" in mode else _int((mode.get("replicated") or {}).get("replicas", 1)),
        "image": spec.get("image"),
        "command": [*(spec.get("commands") or []), *(spec.get("args") or [])],
        "networks": [docker_name(networks[ref]) if ref in networks else f"{ref} (no such network declared)"
                     for n in task.get("networksAdvanceds") or [] for ref in [n.get("id") or n.get("name") or ""]],
        "endpoint_mode": endpoint.get("mode", "vip"),
        "published_ports": [{"published": _int(p.get("publishedPort")), "target": _int(p.get("targetPort")),
                             "protocol": p.get("protocol", "tcp"), "mode": p.get("publishMode", "ingress")}
                            for p in endpoint.get("ports") or []],
        "secrets": mounts,
        "configs": sorted(({"config": configs[ref].name if ref in configs else None, "file": c.get("fileName")}
                           for c in spec.get("configs") or [] for ref in [c.get("configId") or c.get("configName") or ""]),
                          key=lambda c: str(c["file"])),
        "environment": _env(_environment(spec, configs), fragments, mounts),
        "healthcheck": {"test": list(health.get("tests") or []), "interval": health.get("interval"), "timeout": health.get("timeout"),
                        "retries": _int(health.get("retries")), "start_period": health.get("startPeriod")},
        "update": _rollout(inputs.get("updateConfig")),
        "rollback": _rollout(inputs.get("rollbackConfig")),
        "converge": {"delay": converge.get("delay"), "timeout": converge.get("timeout")} if converge else None,
        # The rollout gate: `pulumi up` waits for the last batch of every rollout and fails on a rollback.
        "rollout_wait_seconds": int(gate.inputs["create"].rsplit(" ", 1)[1]) if gate else None,
        "placement": {
            "constraints": list(placement.get("constraints") or []),
            "preferences": [p.get("spread") for p in placement.get("prefs") or []],
            "max_per_node": _int(placement.get("maxReplicas", 0)),
            "platforms": [f"{p.get('os')}/{p.get('architecture')}" for p in placement.get("platforms") or []],
        },
        "resources": {
            "limits": {"memory_mb": _mb((resources.get("limits") or {}).get("memoryBytes")),
                       "cpus": _cpus((resources.get("limits") or {}).get("nanoCpus"))},
            "reservations": {"memory_mb": _mb((resources.get("reservation") or {}).get("memoryBytes")),
                             "cpus": _cpus((resources.get("reservation") or {}).get("nanoCpus"))},
        },
        "restart": {"condition": restart.get("condition", "any"), "delay": restart.get("delay"),
                    "max_attempts": _int(restart.get("maxAttempts", 0)), "window": restart.get("window")},
        "log_rotation": {"driver": log.get("name"), **(log.get("options") or {})},
        "stop_signal": spec.get("stopSignal"),
        "stop_grace_period": spec.get("stopGracePeriod"),
    }


def services(evaluation: Evaluation, settings: Settings, fragments: set[str]) -> dict[str, dict[str, Any]]:
    """Every Swarm service the stack declares, by report key (`api-blue`, `workers`, ...)."""
    networks, secrets = networks_by_reference(evaluation), _secrets_by_reference(evaluation)
    found = {}
    for resource in sorted(evaluation.of_type(SERVICE), key=lambda r: r.name):
        key, _, _ = _identity(resource, settings)
        found[key] = _service(resource, evaluation, settings, fragments, networks, secrets)
    return found


# --- Secrets -------------------------------------------------------------------------------------------

def _config_secrets(settings: Settings) -> dict[str, str]:
    """Full key (and path) -> value of every secret the stack's config holds (in memory only)."""
    values = {}
    for name in SECRET_FIELDS:
        value, key = getattr(settings, name), full_key(Settings.model_fields[name].alias)
        if isinstance(value, list):  # registry credentials: the passwords are the secrets
            values.update({f"{key}[{index}].password": entry.password.get_secret_value() for index, entry in enumerate(value)})
        elif value is not None:
            values[key] = value.get_secret_value()
    return values


def _decoded(text: str) -> list[str]:
    """A string and, where it is base64, its decoding and (a tar) the text of each member."""
    texts = [text]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return texts
    texts.append(raw.decode("latin-1"))
    try:
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member)
                if handle is not None:
                    texts.append(handle.read().decode("latin-1"))
    except (tarfile.TarError, EOFError):
        pass
    return texts


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _carriers(evaluation: Evaluation, value: str) -> list[str]:
    """`<resource>.<input>` of every secret input that holds `value` (decoded where it is encoded)."""
    return sorted(f"{r.name}.{key}" for r in evaluation.resources for key in sorted(r.secret_inputs)
                  if any(value in text for s in _strings(r.inputs.get(key)) for text in _decoded(s)))


def secrets(evaluation: Evaluation, settings: Settings, services_: dict[str, dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(Swarm secrets with their source and mounts, the stack's other secrets and where each travels)."""
    config = _config_secrets(settings)
    randoms = {r.urn: r for r in evaluation.of_type(RANDOM_PASSWORD)}
    swarm, carried = [], set()
    for resource in sorted(evaluation.of_type(SECRET), key=lambda r: r.name):
        try:
            value = base64.b64decode(resource.inputs.get("data") or "", validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            value = None
        keys = sorted(key for key, secret in config.items() if value is not None and secret == value)
        generators = [randoms[urn] for urn in resource.dependencies if urn in randoms]
        if keys:
            source = ", ".join(f"stack config {key} (secret)" for key in keys)
            carried.update(keys)
        elif generators:
            source = ", ".join(f"generated (pulumi-random {r.name}, {int(r.inputs['length'])} characters)" for r in generators)
            carried.update(r.name for r in generators)
        else:
            source = "not from the stack's config nor generated by it"
        swarm.append({
            "name": resource.name,
            "generated_name": docker_name(resource),
            "source": source,
            "mounted_by": [{"service": key, "file": m["file"]} for key, s in services_.items() for m in s["secrets"] if m["secret"] == resource.name],
        })
    other = [{"name": key, "source": "stack config (secret)", "travels_in": _carriers(evaluation, value)}
             for key, value in sorted(config.items()) if key not in carried]
    other += [{"name": r.name, "source": f"generated (pulumi-random, {int(r.inputs['length'])} characters)", "travels_in": []}
              for r in sorted(randoms.values(), key=lambda r: r.name) if r.name not in carried]
    other += [{"name": f"{r.name}.private_key", "source": f"made where `pulumi up` runs, certified by {r.inputs['directory']} (a Pulumi secret output)",
               "travels_in": sorted({c for value in evaluation.secret_values for c in _carriers(evaluation, value) if ".stdin" in c})}
              for r in evaluation.of_type(ACME_CERTIFICATE_TYPE)]
    return swarm, other


# --- Diagram -------------------------------------------------------------------------------------------

def _id(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def node_id(host: str) -> str:
    return "node_" + _id(short_host(host))


def loopback_id(host: str) -> str:
    return node_id(host) + "_loopback"


def mermaid(report: dict[str, Any]) -> str:
    """What is exposed where: each node with the containers it runs (and its own 127.0.0.1), the Swarm
    services with the nodes they may run on, the overlay networks each joins."""
    lines = ["flowchart LR"]
    containers = [(c["name"], c["node"], name, service) for name, service in report["services"].items() for c in service["placed"]]
    public = [(docker, node, p) for docker, node, _, s in containers for p in s["ports"] if p["bind"] != "127.0.0.1"]
    swarm_public = [(key, p) for key, s in report["swarm_services"].items() for p in s["published_ports"]]
    if public or swarm_public:
        lines.append("    internet((internet))")
    for network in report["networks"]:
        kind = "internal" if network["internal"] else "routable"
        extra = ", encrypted" if network.get("encrypted") else ""
        lines.append(f"    {_id(network['name'])}{{{{\"{network['name']}<br/>{network.get('driver') or 'bridge'}, {kind}{extra}\"}}}}")
    for node in sorted({node for _, node, _, _ in containers}):
        lines.append(f"    subgraph {node_id(node)} [\"{short_host(node)}\"]")
        here = [(docker, service) for docker, n, _, service in containers if n == node]
        if any(p["bind"] == "127.0.0.1" for _, s in here for p in s["ports"]):
            lines.append(f"        {loopback_id(node)}((127.0.0.1))")
        lines += [f"        {_id(docker)}[\"{docker}\"]" for docker, _ in here]
        lines.append("    end")
    for docker, _, _, service in containers:
        lines += [f"    {_id(docker)} --- {_id(n['name'])}" for n in service["networks"]]
    constraints = sorted({c for s in report["swarm_services"].values() for c in s["placement"]["constraints"]})
    if report["swarm_services"]:
        label = "Swarm services" + (f"<br/>on nodes where {' and '.join(constraints)}" if constraints else "")
        lines.append(f"    subgraph swarm_services [\"{label}\"]")
        for key, s in report["swarm_services"].items():
            count = "global" if s["mode"] == "global" else f"×{s['replicas']}"
            lines.append(f"        {_id('svc_' + key)}[[\"{key} {count}<br/>{s['name']}\"]]")
        lines.append("    end")
        for key, s in report["swarm_services"].items():
            lines += [f"    {_id('svc_' + key)} --- {_id(name)}" for name in s["networks"]]
    for docker, _node, p in public:
        lines.append(f"    internet -->|\"{p['bind']}:{p['host']}\"| {_id(docker)}")
    for docker, node, _, s in containers:
        lines += [f"    {loopback_id(node)} -->|\"{p['host']}\"| {_id(docker)}" for p in s["ports"] if p["bind"] == "127.0.0.1"]
    for key, p in swarm_public:
        where = "every node" if p["mode"] == "ingress" else "nodes running a task"
        lines.append(f"    internet -->|\"{where}:{p['published']}\"| {_id('svc_' + key)}")
    return "\n".join(lines)


# --- Markdown ------------------------------------------------------------------------------------------

def _code(value: Any) -> str:
    return "`" + str(value).replace("`", "'") + "`"


def _rollout_text(policy: Optional[dict[str, Any]]) -> str:
    if policy is None:
        return "Swarm's defaults (stop-first, one at a time, pause on failure)"
    return (f"{policy['order']}, {policy['parallelism']} at a time, {policy['delay']} between batches, "
            f"each watched {policy['monitor'] or 'Swarm default 5s'}, on failure **{policy['failure_action']}** "
            f"(max failure ratio {policy['max_failure_ratio']})")


def _limits(values: dict[str, Any]) -> str:
    return f"{values['memory_mb']} MB, {values['cpus']} CPUs" if values["memory_mb"] or values["cpus"] else "none"


def service_sections(report: dict[str, Any]) -> list[str]:
    out = ["## Swarm services", ""]
    if not report["swarm_services"]:
        return out + ["None.", ""]
    out += ["| service | Swarm name | role / pool | replicas | image | networks | published ports |", "|---|---|---|---|---|---|---|"]
    for key, s in report["swarm_services"].items():
        replicas = "global" if s["mode"] == "global" else str(s["replicas"])
        ports = ", ".join(f"{p['published']}→{p['target']}/{p['protocol']} ({p['mode']})" for p in s["published_ports"]) or "none"
        out.append(f"| {key} | {_code(s['name'])} | {s['role']} / {s['pool'] or '-'} | {replicas} | {_code(s['image'])} "
                   f"| {', '.join(s['networks'])} | {ports} |")
    for key, s in report["swarm_services"].items():
        h, p, r = s["healthcheck"], s["placement"], s["restart"]
        env = ", ".join(
            _code(e["name"]) + (" (secret value!)" if e["secret"] else "")
            + (f" (file of secret {e['secret_file']})" if e.get("secret_file")
               else f" (points into {SECRETS_DIR}, where no secret is mounted)" if str(e.get("file") or "").startswith(SECRETS_DIR + "/") else "")
            for e in s["environment"]) or "none"
        mounts = ", ".join(f"{_mounted_as(m)} → {_code(m['file'])}" for m in s["secrets"]) or "none"
        out += [
            "", f"### {key}", "",
            f"- Swarm name {_code(s['name'])} (resource `{s['resource']}`), {s['mode']}"
            + (f", {s['replicas']} replicas" if s["mode"] == "replicated" else "") + f", endpoint mode {s['endpoint_mode']}",
            f"- Image {_code(s['image'])}" + (f", command {_code(' '.join(s['command']))}" if s["command"] else ""),
            f"- Networks: {', '.join(s['networks']) or 'none'}",
            f"- Secrets mounted: {mounts}",
            *([f"- Configs mounted: {', '.join(str(c['config']) + ' → ' + _code(c['file']) for c in s['configs'])}"] if s["configs"] else []),
            f"- Environment: {env}",
            f"- Healthcheck every {h['interval']}, timeout {h['timeout']}, {h['retries']} retries, start period {h['start_period']}: "
            + (_code(" ".join(h["test"])) if h["test"] else "**none**"),
            f"- Update: {_rollout_text(s['update'])}",
            f"- Rollback: {_rollout_text(s['rollback'])}",
            f"- Placement: {', '.join(_code(c) for c in p['constraints']) or 'any node'}; "
            + (f"at most {p['max_per_node']} per node" if p["max_per_node"] else "**no limit per node**")
            + (f"; spread over {', '.join(map(str, p['preferences']))}" if p["preferences"] else "")
            + (f"; platforms {', '.join(p['platforms'])}" if p["platforms"] else ""),
            f"- Resources: limits {_limits(s['resources']['limits'])}; reservations {_limits(s['resources']['reservations'])}",
            f"- Restart: on {r['condition']}, after {r['delay'] or '0s (immediately)'}, "
            + (f"at most {r['max_attempts']} attempts" if r["max_attempts"] else "unlimited attempts") + f", window {r['window']}",
            f"- Logs: {s['log_rotation'].get('driver')} {s['log_rotation'].get('max-size')} × {s['log_rotation'].get('max-file')}",
            f"- Stop: {s['stop_signal'] or 'SIGTERM'}, grace period {s['stop_grace_period'] or '**0s** (killed at once)'}"
            + (f"; `pulumi up` waits for convergence (checked every {s['converge']['delay']}, up to {s['converge']['timeout']})"
               if s["converge"] else "")
            + (f"; `pulumi up` waits up to {s['rollout_wait_seconds']}s for every replica of a rollout (its gate fails on a rollback)"
               if s["rollout_wait_seconds"] else ""),
        ]
    return out + [""]


def secret_sections(report: dict[str, Any]) -> list[str]:
    out = ["## Secrets", "", "Swarm secrets: files under `/run/secrets` in the tasks that mount them, only on the nodes running",
           "those tasks (values never shown):", "",
           "| secret | Swarm name | source | mounted by |", "|---|---|---|---|"]
    for s in report["swarm_secrets"]:
        mounted = ", ".join(f"{m['service']} ({_code(m['file'])})" for m in s["mounted_by"]) or "nothing"
        out.append(f"| {s['name']} | {_code(s['generated_name'])} | {s['source']} | {mounted} |")
    out += ["", "Secrets that are not Swarm secrets:", ""]
    if not report["secrets_outside_swarm"]:
        return out + ["None.", ""]
    out += ["| secret | source | travels in (Pulumi secret inputs) |", "|---|---|---|"]
    for s in report["secrets_outside_swarm"]:
        out.append(f"| {s['name']} | {s['source']} | {', '.join(_code(t) for t in s['travels_in']) or 'not used by any resource'} |")
    return out + [""]
