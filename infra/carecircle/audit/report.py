"""The declared-environment report: what a stack declares, for auditors, as data, Markdown or JSON.

Built from an offline evaluation (the same mocks as the tests) and the stack's settings. Secret
values are never included: an environment variable is marked secret when its value holds any secret
the stack handles, or a part of one (a URL's password, a PEM body), and secrets are listed by name
and source only. Containers are grouped into services by their labels only where they are alike, so a
label cannot hide what a container exposes; the alert list is read from the rules the stack ships.

A swarm stack (carecircle:platform swarm) adds, from swarm_report.py: `swarm_services` (each Swarm
service: generated name, rollout, placement, resources, secrets mounted), `swarm_secrets` and
`secrets_outside_swarm`, the node each container runs on (`placed`), and a diagram per node. An
engine stack's report is unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional
from urllib.parse import unquote, urlsplit

import yaml

from ..alerting import alertmanager_names, render_alertmanager_config
from ..monitoring import render_alert_rules, scrape_jobs
from ..offline import DeclaredResource, Evaluation
from ..settings import COLORS, SECRET_FIELDS, Settings, full_key
from . import swarm_report
from .policy_check import check, load_policies

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"


def _labels(resource: DeclaredResource) -> dict[str, str]:
    return {item["label"]: item["value"] for item in resource.inputs.get("labels", [])}


def _service_name(resource: DeclaredResource) -> str:
    labels = _labels(resource)
    color = labels.get("com.carecircle.color")
    return f"{labels.get('com.carecircle.role')}-{color}" if color else labels.get("com.carecircle.role", resource.name)


PEM_BOUNDARY = "-----"


def secret_fragments(secret_values: Iterable[str]) -> set[str]:
    """Every piece of a secret that is secret on its own: the whole value, the password and the
    userinfo of a URL (as written and percent-decoded), the body of a PEM block and each of its lines."""
    fragments: set[str] = set()
    for value in secret_values:
        if not value:
            continue
        fragments.add(value)
        try:
            url = urlsplit(value.strip())
        except ValueError:
            url = None
        if url is not None and url.scheme and "@" in url.netloc:
            userinfo = url.netloc.rpartition("@")[0]
            _, has_password, password = userinfo.partition(":")
            fragments |= {userinfo, unquote(userinfo)}
            if has_password and password:
                fragments |= {password, unquote(password)}
        if PEM_BOUNDARY in value:
            body = [line.strip() for line in value.splitlines() if line.strip() and PEM_BOUNDARY not in line]
            fragments |= {"".join(body), *body}
    return {fragment for fragment in fragments if fragment}


def _env(resource: DeclaredResource, fragments: set[str]) -> list[dict[str, Any]]:
    entries = []
    for entry in resource.inputs.get("envs", []):
        name, _, value = entry.partition("=")
        entries.append({"name": name, "secret": any(fragment in value for fragment in fragments)})
    return entries


def _int(value: Any) -> Any:
    """Numbers arrive from the engine (and the mocks) as floats."""
    return int(value) if isinstance(value, float) else value


def _shape(resource: DeclaredResource, fragments: set[str]) -> dict[str, Any]:
    """What the report says about one container, less its name and fixed addresses."""
    inputs = resource.inputs
    health = inputs.get("healthcheck") or {}
    return {
        "image": inputs.get("image"),
        # A missing or empty bind address is Docker's 0.0.0.0.
        "ports": [{"bind": p.get("ip") or "0.0.0.0", "host": int(p["external"]), "container": int(p["internal"])} for p in inputs.get("ports", [])],
        "volumes": [v.get("volumeName") or v.get("hostPath") for v in inputs.get("volumes", [])],
        "environment": _env(resource, fragments),
        "healthcheck": {"test": health.get("tests", []), "interval": health.get("interval"), "retries": _int(health.get("retries"))},
        "restart": inputs.get("restart"),
        "limits": {"memory_mb": _int(inputs.get("memory")), "cpus": inputs.get("cpus")},
        "log_rotation": {"driver": inputs.get("logDriver"), **(inputs.get("logOpts") or {})},
        "stop_grace_seconds": _int(inputs.get("stopTimeout")),
        "network_names": [n["name"] for n in inputs.get("networksAdvanced", [])],
    }


def _service(containers: list[DeclaredResource], fragments: set[str]) -> dict[str, Any]:
    first = containers[0]
    shape = _shape(first, fragments)
    return {
        "containers": [c.inputs["name"] for c in containers],
        "replicas": len(containers),
        "image": shape["image"],
        "networks": [
            {"name": n["name"], **({"fixed_addresses": [next(x for x in c.inputs["networksAdvanced"] if x["name"] == n["name"])["ipv4Address"] for c in containers]} if "ipv4Address" in n else {})}
            for n in first.inputs.get("networksAdvanced", [])
        ],
        **{key: value for key, value in shape.items() if key not in ("image", "network_names")},
    }


def _services(containers: list[DeclaredResource], fragments: set[str]) -> dict[str, list[DeclaredResource]]:
    """Containers grouped into services by their role (and colour) labels, but only replicas that
    are alike: a container that differs from the rest of its group in anything the report shows (its
    ports above all) is a service of its own, under its Docker name, so a label can never hide it."""
    groups: dict[str, list[DeclaredResource]] = {}
    for resource in sorted(containers, key=lambda r: r.inputs["name"]):
        groups.setdefault(_service_name(resource), []).append(resource)
    services: dict[str, list[DeclaredResource]] = {}
    for name, members in groups.items():
        shapes = [json.dumps(_shape(member, fragments), sort_keys=True, default=str) for member in members]
        if len(set(shapes)) == 1:
            services[name] = members
        else:
            services.update({member.inputs["name"]: [member] for member in members})
    return services


def _acme_lines(acme: Optional[dict[str, Any]]) -> list[str]:
    if acme is None:
        return []
    expires = acme["expires"] or "known after `pulumi up`: `pulumi stack output gatewayCertificateExpiry`"
    alert = f"; alert below {acme['expiry_alert_days']} days left" if acme["expiry_alert_days"] else ""
    return [f"- Certificate (ACME): directory {_code(acme['directory'])}, names {', '.join(_code(n) for n in acme['names'])}, "
            f"renewed by the first `pulumi up` within {acme['renewal_margin_days']} days of expiry{alert}; current one expires: {expires}"]


def _acme(evaluation: Evaluation, settings: Settings) -> Optional[dict[str, Any]]:
    """gatewayTls acme: where the certificate comes from, for which names, when it is renewed, and
    when the one the gateways serve expires (known once `pulumi up` has run)."""
    if settings.gateway_tls != "acme":
        return None
    return {"directory": settings.acme_directory, "names": [settings.gateway_server_name],
            "renewal_margin_days": settings.gateway_acme_renewal_margin_days,
            "expires": evaluation.outputs.get("gatewayCertificateExpiry") or None,
            "expiry_alert_days": settings.alert_certificate_expiry_days if settings.monitoring_enabled else None}


def build(evaluation: Evaluation, settings: Settings) -> dict[str, Any]:
    """The report as plain data (what `--format json` prints)."""
    fragments = secret_fragments(evaluation.secret_values)
    services = _services(evaluation.of_type(CONTAINER), fragments)
    swarm = settings.platform == "swarm"
    volumes = evaluation.of_type(VOLUME)
    mounted_by = {v: name for name, cs in services.items() for c in cs for v in (x.get("volumeName") for x in c.inputs.get("volumes", [])) if v}
    violations = sorted(check(evaluation.resources), key=lambda v: (v.policy, v.message))
    policies = load_policies().POLICIES
    external = sorted(full_key(Settings.model_fields[name].alias) for name in SECRET_FIELDS if getattr(settings, name))
    report: dict[str, Any] = {
        "stack": evaluation.stack,
        "environment": settings.environment,
        "docker_host": settings.docker_host or "local engine (DOCKER_HOST or /var/run/docker.sock)",
        "gateway": {
            "url": evaluation.outputs.get("gatewayUrl"),
            "server_name": settings.gateway_server_name,
            "tls": settings.gateway_tls_profile if settings.gateway_tls else "off",
            "certificate": settings.gateway_tls_mode if settings.gateway_tls else None,
            "acme": _acme(evaluation, settings),
            "active_pool": settings.api_active_color,
            "routes": [{"path": r.path, "service": r.service, "strip_prefix": r.strip_prefix} for r in settings.gateway_routes]
                      + [{"path": p, "service": "api", "strip_prefix": False} for p in ("/health", "/ready", "/live")],
            "rate_limit": f"{settings.gateway_rate_limit_per_second} r/s per client IP, burst {settings.gateway_rate_limit_burst}",
            "cors_origins": list(settings.gateway_cors_origins),
            "preview_port": settings.gateway_preview_port,
        },
        "services": {name: _service(cs, fragments) for name, cs in services.items()},
        # Registration order is asynchronous: sort, so a report only changes when the stack does.
        "networks": sorted(({"name": swarm_report.docker_name(n), "internal": bool(n.inputs.get("internal"))} for n in evaluation.of_type(NETWORK)),
                           key=lambda n: n["name"]),
        "volumes": sorted(({"name": v.inputs["name"], "protected": v.protect, "mounted_by": mounted_by.get(v.inputs["name"])} for v in volumes),
                          key=lambda v: v["name"]),
        "secrets": sorted(
            [{"name": r.name, "source": f"generated (pulumi-random, {int(r.inputs['length'])} characters)"}
             for r in evaluation.of_type("random:index/randomPassword:RandomPassword")]
            + [{"name": key, "source": "stack config (secret)"} for key in external],
            key=lambda s: s["name"]),
        "policy": {"rules": [p.name for p in policies], "violations": [{"policy": v.policy, "message": v.message} for v in violations]},
        "monitoring": _monitoring(settings, _api_services(evaluation, settings) if swarm else None),
    }
    if swarm:
        _add_swarm(report, evaluation, settings, services, fragments)
    return report


def _api_services(evaluation: Evaluation, settings: Settings) -> dict[str, str]:
    """color -> the generated name of that pool's Swarm service (what Prometheus resolves)."""
    names = {r.name: r.autoname or r.inputs.get("name") for r in evaluation.of_type(swarm_report.SERVICE)}
    return {color: names[settings.docker_name("api", color)] for color in COLORS if settings.docker_name("api", color) in names}


def _add_swarm(report: dict[str, Any], evaluation: Evaluation, settings: Settings,
               services: dict[str, list[DeclaredResource]], fragments: set[str]) -> None:
    """What a swarm stack adds: its services, where each container runs, its secrets as Swarm sees them."""
    report["platform"] = "swarm"
    report["edge_nodes"] = list(settings.swarm_edge_hosts)
    report["monitoring_nodes"] = list(settings.swarm_monitoring_hosts) if settings.monitoring_enabled else []
    for name, containers in services.items():
        report["services"][name]["placed"] = [{"name": c.inputs["name"], "node": swarm_report.node_of(evaluation, c, settings)}
                                              for c in containers]
    by_name = {swarm_report.docker_name(n): n for n in evaluation.of_type(NETWORK)}
    for network in report["networks"]:
        inputs = by_name[network["name"]].inputs
        network.update({"driver": inputs.get("driver") or "bridge", "attachable": bool(inputs.get("attachable")),
                        "encrypted": "encrypted" in (inputs.get("options") or {})})
    volumes = {v.inputs["name"]: v for v in evaluation.of_type(VOLUME)}
    for volume in report["volumes"]:
        volume["node"] = swarm_report.node_of(evaluation, volumes[volume["name"]], settings)
    report["swarm_services"] = swarm_report.services(evaluation, settings, fragments)
    report["swarm_secrets"], report["secrets_outside_swarm"] = swarm_report.secrets(evaluation, settings, report["swarm_services"])


def _monitoring(settings: Settings, api_services: Optional[dict[str, str]] = None) -> dict[str, Any]:
    if not settings.monitoring_enabled:
        return {"enabled": False}
    return {
        "enabled": True,
        "retention": settings.prometheus_retention,
        "scrape_interval": settings.scrape_interval,
        # A swarm pool is scraped through DNS: every task `tasks.<service>` resolves to.
        "targets": [{"job": job.name, "targets": [*(t for group in job.groups for t in group.targets),
                                                  *(f"{group.dns_name}:{group.dns_port} (every task, by DNS)" for group in job.groups if group.dns_name)]}
                    for job in scrape_jobs(settings, api_services)],
        "alerts": (alerts := shipped_alerts(settings)),
        "alerting": alert_routing(settings, alerts),
        "tracing": {"otlp_endpoint": settings.otel_exporter_endpoint, "sample_rate": settings.trace_sample_rate,
                    "sentry": settings.sentry_dsn is not None},
    }


def shipped_alerts(settings: Settings) -> list[dict[str, Any]]:
    """The alert rules the stack ships (rendered as Prometheus gets them): name, `for:`, severity,
    summary and description, in file order."""
    rules = yaml.safe_load(render_alert_rules(settings))
    return [
        {"alert": rule["alert"], "for": rule.get("for", "0s"), "severity": (rule.get("labels") or {}).get("severity"),
         "summary": (rule.get("annotations") or {}).get("summary"), "description": (rule.get("annotations") or {}).get("description")}
        for group in rules.get("groups") or [] for rule in group.get("rules") or [] if "alert" in rule
    ]


# How each Alertmanager integration is named in the report; its URL or key is never shown.
INTEGRATION_NAMES = {"webhook_configs": "webhook", "slack_configs": "Slack incoming webhook",
                     "pagerduty_configs": "PagerDuty Events API v2", "email_configs": "e-mail"}


def alert_routing(settings: Settings, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Who is notified of what, read from the Alertmanager configuration the stack ships (parsed in
    memory; only receiver names, integration kinds and e-mail recipients leave it) and routed the way
    Alertmanager routes (the policy pack's own route walker)."""
    config = yaml.safe_load(render_alertmanager_config(settings))
    route_receivers = load_policies().route_receivers
    delivers: dict[str, list[str]] = {receiver["name"]: [] for receiver in config["receivers"]}
    for alert in alerts:
        for receiver in route_receivers(config["route"], {"alertname": alert["alert"], "severity": alert["severity"] or ""}):
            delivers[receiver].append(alert["alert"])
    route = config["route"]
    return {
        "alertmanagers": alertmanager_names(settings),
        "group_by": route["group_by"], "group_wait": route["group_wait"], "group_interval": route["group_interval"],
        "repeat_interval": route["repeat_interval"], "send_resolved": settings.alert_send_resolved,
        "receivers": [{
            "name": receiver["name"],
            "through": [INTEGRATION_NAMES.get(kind, kind.removesuffix("_configs")) + (f" to {item['to']}" if kind == "email_configs" else "")
                        for kind, items in receiver.items() if kind.endswith("_configs") for item in items],
            "alerts": delivers[receiver["name"]],
            **({"every": settings.alert_dead_mans_switch_interval} if receiver["name"] == "dead-mans-switch" else {}),
        } for receiver in config["receivers"]],
        "inhibitions": [f"{' and '.join(rule['source_matchers'])} silences {' and '.join(rule['target_matchers'])} "
                        f"with the same {', '.join(rule['equal'])}" for rule in config.get("inhibit_rules") or []],
    }


def _cell(value: Any) -> str:
    """Plain text in a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _code(value: Any, in_table: bool = True) -> str:
    text = str(value).replace("`", "'")
    return "`" + (text.replace("|", "\\|") if in_table else text) + "`"


def mermaid(report: dict[str, Any]) -> str:
    """Services, networks and what is exposed (on a swarm stack: per node, swarm_report.mermaid)."""
    if report.get("platform") == "swarm":
        return swarm_report.mermaid(report)
    node = lambda name: name.replace("-", "_")  # noqa: E731
    lines = ["flowchart LR"]
    internet_ports = [(name, p) for name, s in report["services"].items() for p in s["ports"] if p["bind"] != "127.0.0.1"]
    loopback_ports = [(name, p) for name, s in report["services"].items() for p in s["ports"] if p["bind"] == "127.0.0.1"]
    if internet_ports:
        lines.append("    internet((internet))")
    if loopback_ports:
        lines.append("    loopback((Docker host 127.0.0.1))")
    for network in report["networks"]:
        label = f"{network['name']}<br/>{'internal' if network['internal'] else 'routable'}"
        lines.append(f"    {node(network['name'])}{{{{\"{label}\"}}}}")
    for name, service in report["services"].items():
        lines.append(f"    {node(name)}[\"{name} ×{service['replicas']}\"]")
        for network in service["networks"]:
            lines.append(f"    {node(name)} --- {node(network['name'])}")
    for name, port in internet_ports:
        lines.append(f"    internet -->|\"{port['bind']}:{port['host']}\"| {node(name)}")
    for name, port in loopback_ports:
        lines.append(f"    loopback -->|\"{port['host']}\"| {node(name)}")
    return "\n".join(lines)


def markdown(report: dict[str, Any], diagram: Optional[str] = None) -> str:
    """The report in Markdown; `diagram` replaces the Mermaid diagram's source with text (a terminal
    shows the source, not the picture)."""
    g = report["gateway"]
    swarm = report.get("platform") == "swarm"
    if swarm:
        hosts = [f"- Platform: **Docker Swarm**; manager (`docker:host`): {_code(report['docker_host'])}",
                 "- Edge nodes (a gateway container on each): " + ", ".join(_code(h) for h in report["edge_nodes"])]
        if report["monitoring_nodes"]:
            hosts.append("- Monitoring nodes (a Prometheus and an Alertmanager, each with its volume, on each): "
                         + ", ".join(_code(h) for h in report["monitoring_nodes"]))
        preview = f"; idle pool preview on 127.0.0.1:{g['preview_port']} of each edge node" if g["preview_port"] else ""
    else:
        hosts = [f"- Docker host: {_code(report['docker_host'])}"]
        preview = f"; idle pool preview on 127.0.0.1:{g['preview_port']}" if g["preview_port"] else ""
    out = [
        f"# Environment `{report['stack']}` ({report['environment']})",
        "",
        "Generated by `python infra/cli.py report --stack " + report["stack"] + " --format markdown` from the stack's config",
        "under the offline mocks; secret values are never shown. Do not edit: `python infra/cli.py docs` regenerates it.",
        "",
        *hosts,
        f"- Gateway: {g['url']} (server name {_code(g['server_name'])}), TLS: **{g['tls']}**"
        + (f", certificate from {g['certificate']}" if g["certificate"] else ""),
        *_acme_lines(g["acme"]),
        f"- Active api pool: **{g['active_pool']}**" + preview,
        f"- Rate limit: {g['rate_limit']}; CORS origins: " + (", ".join(_code(o) for o in g["cors_origins"]) or "none"),
        "",
        "## Diagram",
        "",
        *([diagram] if diagram is not None else ["```mermaid", mermaid(report), "```"]),
        "",
    ]
    if swarm:
        out += swarm_report.service_sections(report)
        out += ["## Containers (outside Swarm, each created through its node's engine)", "",
                "| container | runs on | image | networks | published ports | volumes | restart | limits | log rotation |",
                "|---|---|---|---|---|---|---|---|---|"]
    else:
        out += ["## Services", "",
                "| service | replicas | image | networks | published ports | volumes | restart | limits | log rotation |",
                "|---|---|---|---|---|---|---|---|---|"]
    for name, s in report["services"].items():
        ports = ", ".join(f"{p['bind']}:{p['host']}→{p['container']}" for p in s["ports"]) or "none"
        limits = f"{s['limits']['memory_mb']} MB, {s['limits']['cpus']} CPU" if s["limits"]["memory_mb"] else "none"
        rotation = f"{s['log_rotation'].get('driver')} {s['log_rotation'].get('max-size')} × {s['log_rotation'].get('max-file')}"
        networks = ", ".join(n["name"] + (" (fixed addresses)" if "fixed_addresses" in n else "") for n in s["networks"])
        rest = (f"| {_code(s['image'])} | {networks} | {ports} | {', '.join(s['volumes']) or 'none'} "
                f"| {s['restart']} | {limits} | {rotation} |")
        if swarm:
            out += [f"| {c['name']} | {_code(c['node'])} {rest}" for c in s["placed"]]
        else:
            out.append(f"| {name} | {s['replicas']} {rest}")
    out += ["", "### Environment variables and healthchecks", ""]
    for name, s in report["services"].items():
        env = ", ".join(_code(e["name"]) + (" (secret)" if e["secret"] else "") for e in s["environment"]) or "none"
        test = " ".join(s["healthcheck"]["test"])
        out.append(f"- **{name}**: {env}")
        out.append(f"  - healthcheck every {s['healthcheck']['interval']}, {s['healthcheck']['retries']} retries: {_code(test, in_table=False)}")
    if swarm:
        out += ["", "## Networks", "", "| network | driver | internal | encrypted | attachable |", "|---|---|---|---|---|"]
        yes = lambda value: "yes" if value else "no"  # noqa: E731
        out += [f"| {n['name']} | {n['driver']} | {yes(n['internal'])} | {yes(n['encrypted'])} | {yes(n['attachable'])} |"
                for n in report["networks"]]
    else:
        out += ["", "## Networks", "", "| network | internal |", "|---|---|"]
        out += [f"| {n['name']} | {'yes' if n['internal'] else 'no'} |" for n in report["networks"]]
    out += ["", "## Volumes", ""]
    if report["volumes"] and swarm:
        out += ["| volume | node | protected | mounted by |", "|---|---|---|---|"]
        out += [f"| {v['name']} | {_code(v['node'])} | {'yes' if v['protected'] else 'no'} | {v['mounted_by']} |" for v in report["volumes"]]
    elif report["volumes"]:
        out += ["| volume | protected | mounted by |", "|---|---|---|"]
        out += [f"| {v['name']} | {'yes' if v['protected'] else 'no'} | {v['mounted_by']} |" for v in report["volumes"]]
    else:
        out.append("None: the data services are managed outside this stack.")
    if swarm:
        out += ["", *swarm_report.secret_sections(report)[:-1]]
    else:
        out += ["", "## Secrets", "", "| secret | source |", "|---|---|"]
        out += [f"| {s['name']} | {s['source']} |" for s in report["secrets"]]
    out += ["", "## Gateway routes", "", "| path prefix | service | strip prefix |", "|---|---|---|"]
    out += [f"| {_code(r['path'])} | {r['service']} | {'yes' if r['strip_prefix'] else 'no'} |" for r in g["routes"]]
    out += ["", "## Monitoring", ""]
    monitoring = report["monitoring"]
    if not monitoring["enabled"]:
        out.append("Off in this stack (`carecircle:monitoringEnabled`).")
    else:
        out.append(f"Prometheus (retention {monitoring['retention']}, every {monitoring['scrape_interval']}) scrapes:")
        out.append("")
        out += [f"- **{t['job']}**: " + ", ".join(_code(x, in_table=False) for x in t["targets"]) for t in monitoring["targets"]]
        out += ["", "| alert | for | severity | summary | description |", "|---|---|---|---|---|"]
        out += [f"| {a['alert']} | {a['for']} | {a['severity']} | {_cell(a['summary'])} | {_cell(a['description'])} |"
                for a in monitoring["alerts"]]
        out += ["", *alert_routing_lines(monitoring["alerting"])]
        tracing = monitoring["tracing"]
        out += ["", f"Traces: {'OTLP to ' + _code(tracing['otlp_endpoint']) if tracing['otlp_endpoint'] else 'not exported'}, "
                f"sample rate {tracing['sample_rate']:g}; Sentry: {'on (DSN from stack secrets)' if tracing['sentry'] else 'off'}."]
    out += ["", "## Policy", ""]
    violations = report["policy"]["violations"]
    if violations:
        out += [f"- **{v['policy']}**: {v['message']}" for v in violations]
    else:
        out.append(f"All {len(report['policy']['rules'])} rules pass: " + ", ".join(_code(r) for r in report["policy"]["rules"]) + ".")
    return "\n".join(out) + "\n"


def alert_routing_lines(alerting: dict[str, Any]) -> list[str]:
    gossip = ", gossiping to send each notification once" if len(alerting["alertmanagers"]) > 1 else ""
    out = [f"Alertmanager ({', '.join(_code(n, in_table=False) for n in alerting['alertmanagers'])}{gossip}) groups alerts by "
           f"{', '.join(alerting['group_by'])}: a new group is notified after {alerting['group_wait']}, a changed one after "
           f"{alerting['group_interval']}, one still firing again every {alerting['repeat_interval']}; resolved alerts "
           f"{'are' if alerting['send_resolved'] else 'are not'} notified. "
           + " ".join(f"Inhibition: {_code(rule, in_table=False)}." for rule in alerting["inhibitions"]),
           "", "| receiver | notifies through (URLs and keys from stack secrets, never shown) | alerts it gets |", "|---|---|---|"]
    for receiver in alerting["receivers"]:
        through = ", ".join(receiver["through"]) or "nothing (dropped)"
        if "every" in receiver:
            through += f", every {receiver['every']}" if receiver["through"] else " (no dead man's switch configured)"
        out.append(f"| {receiver['name']} | {_cell(through)} | {', '.join(receiver['alerts']) or 'none'} |")
    return out


def diagram_pointer(stack: str, committed: bool) -> str:
    """Where a person sees the diagram when the report is read in a terminal."""
    where = (f"docs/environments/{stack}.md (GitHub and most editors render it)" if committed else
             f"python infra/cli.py report --stack {stack} --format markdown > {stack}.md, opened where Markdown renders (GitHub, an editor)")
    return f"The diagram of what is exposed where is a Mermaid chart: see it in {where}."


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"
