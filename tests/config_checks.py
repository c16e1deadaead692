"""What the consumer-grammar tests share: settings accepted or refused (with the key, the stack and a
fix, never a traceback), and a rendered gateway configuration checked by the real nginx."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from carecircle.offline import stack_settings
from carecircle.rendering import GatewayPorts, NginxPaths, TlsFiles, Upstream, render_nginx_conf
from carecircle.settings import ConfigError, Settings
from nginx_harness import nginx_test

FIX_COMMANDS = ("pulumi config", "set ", "pulumi stack rename")


def settings_or_error(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> Settings | ConfigError:
    try:
        return stack_settings(stack, overrides=overrides)
    except ConfigError as error:
        return error


def refused(stack: str, overrides: Mapping[str, Any], key: str) -> str:
    """The message of the problem reported on `key` (the test fails when the value is accepted)."""
    outcome = settings_or_error(stack, overrides)
    assert isinstance(outcome, ConfigError), f"{stack} accepted {dict(overrides)}"
    assert "Traceback" not in str(outcome)
    found = [p for p in outcome.problems if p.key == key]
    assert found, f"no problem on {key}: {outcome}"
    assert all(p.fix.startswith(FIX_COMMANDS) for p in found), found
    assert f"--stack {stack}" in found[0].fix or found[0].fix.startswith(("set ", "pulumi stack rename")), found[0].fix
    return found[0].message


def accepted(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> Settings:
    outcome = settings_or_error(stack, overrides)
    assert not isinstance(outcome, ConfigError), str(outcome)
    return outcome


UPSTREAMS = {"api": Upstream(("127.0.0.1:3001", "127.0.0.1:3002")), "api_idle": Upstream(("tasks.api-green:3000",), resolve=True)}


def nginx_checks(settings: Settings, directory: Path, tls: Optional[TlsFiles]) -> str:
    """`nginx -t` of the stack's rendered configuration; its output, asserting it passed without a warning."""
    conf = directory / "nginx.conf"
    conf.write_text(render_nginx_conf(settings, UPSTREAMS, ports=GatewayPorts(18080, 18443, 18081, 18082),
                                      paths=NginxPaths(runtime_dir=str(directory), access_log=str(directory / "a.log")),
                                      tls_files=tls))
    checked = nginx_test(directory, conf)
    assert checked.returncode == 0 and "[warn]" not in checked.stderr, checked.stderr
    return checked.stderr


def nginx_output(directory: Path, conf_text: str) -> tuple[int, str]:
    """`nginx -t` of a configuration text as it is (for what the settings never render)."""
    conf = directory / "probe.conf"
    conf.write_text(conf_text)
    checked = nginx_test(directory, conf)
    return checked.returncode, checked.stderr


def minimal_http(directory: Path, body: str) -> str:
    """A configuration of the runtime paths and `body` inside http{}, to run one directive past nginx."""
    temp = "\n".join(f"    {name}_temp_path {directory}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"pid {directory}/nginx.pid;\nerror_log stderr warn;\nevents {{}}\nhttp {{\n{temp}\n    access_log off;\n"
            f"{body}\n}}\n")


def consumer_workdir(tmp_path_factory) -> tuple[Path, TlsFiles]:
    """A directory for nginx's runtime files, with a certificate for the stacks that serve TLS."""
    from nginx_harness import make_certificate

    directory = tmp_path_factory.mktemp("consumer")
    return directory, make_certificate(directory, "api.carecircle.example")
