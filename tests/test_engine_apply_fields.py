"""The applier against a real single-node Swarm, field by field: every mapped input of networks,
volumes, secrets, configs, containers, commands and providers lands on the engine as the provider sends
it (services: tests/test_engine_apply_service_fields.py). The last test checks that every mapped input
path of every kind is proven by one of these tests."""

from __future__ import annotations

import base64
import subprocess
import time

import pulumi
import pulumi_command as command
import pulumi_docker as dk
import pytest

from engine_apply import (
    COMMAND,
    CONFIG,
    CONTAINER,
    KINDS,
    NETWORK,
    SECRET,
    VOLUME,
    CommandFailedError,
    EngineApplier,
    mapped_paths,
)
from real_engine import COVERED, IMAGE, NS, b64, covers, evaluate, exec_out, file_in, overlay, task_containers

# ---------------------------------------------------------------------------------------------
# Field by field: networks, volumes, secrets, configs
# ---------------------------------------------------------------------------------------------


@covers(NETWORK, "name", "driver", "internal", "ipv6", "options", "ipamDriver", "ipamOptions", "labels",
        "ipamConfigs[].subnet", "ipamConfigs[].ipRange", "ipamConfigs[].gateway", "ipamConfigs[].auxAddress")
def test_bridge_network_fields(engine, applier, uid):
    def program():
        dk.Network("br", name=f"{uid}-br", driver="bridge", internal=True, ipv6=True,
                   options={"com.docker.network.bridge.name": f"br-{uid}"},
                   ipam_driver="default", ipam_options={"engapply": "yes"},
                   ipam_configs=[dk.NetworkIpamConfigArgs(subnet="10.201.0.0/24", ip_range="10.201.0.128/25",
                                                          gateway="10.201.0.1", aux_address={"reserved": "10.201.0.5"}),
                                 dk.NetworkIpamConfigArgs(subnet="fd00:201::/64")],
                   labels=[dk.NetworkLabelArgs(label="com.example.tier", value="back")])

    applier.apply(evaluate(engine, program))
    net = engine.api.inspect_network(applier.real_id("br"))
    assert net["Name"] == f"{uid}-br"
    assert net["Driver"] == "bridge"
    assert net["Internal"] is True
    assert net["EnableIPv6"] is True
    assert net["Options"]["com.docker.network.bridge.name"] == f"br-{uid}"
    assert net["IPAM"]["Driver"] == "default"
    assert net["IPAM"]["Options"] == {"engapply": "yes"}
    v4 = next(c for c in net["IPAM"]["Config"] if c["Subnet"] == "10.201.0.0/24")
    assert v4["IPRange"] == "10.201.0.128/25"
    assert v4["Gateway"] == "10.201.0.1"
    assert v4["AuxiliaryAddresses"] == {"reserved": "10.201.0.5"}  # JSON name of the Go field AuxAddress
    assert any(c["Subnet"] == "fd00:201::/64" for c in net["IPAM"]["Config"])
    assert net["Labels"] == {"com.example.tier": "back"}


@covers(NETWORK, "attachable")
def test_overlay_network_fields(engine, applier, uid):
    def program():
        dk.Network("ov", name=f"{uid}-ov", driver="overlay", attachable=True, options={"encrypted": ""},
                   labels=[dk.NetworkLabelArgs(label="scope", value="swarm")])

    applier.apply(evaluate(engine, program))
    net = engine.api.inspect_network(applier.real_id("ov"))
    assert (net["Driver"], net["Scope"]) == ("overlay", "swarm")
    assert net["Attachable"] is True
    assert "encrypted" in net["Options"]
    assert net["Labels"] == {"scope": "swarm"}


@covers(NETWORK, "ingress")
def test_ingress_network_field(engine, applier, uid):
    """A swarm has one routing-mesh network: the test replaces the default one with its own."""
    for network in engine.api.networks(names=["ingress"]):
        if network.get("Ingress"):
            engine.api.remove_network(network["Id"])
    applier.apply(evaluate(engine, lambda: dk.Network("mesh", name=f"{uid}-mesh", driver="overlay", ingress=True)))
    net = engine.api.inspect_network(applier.real_id("mesh"))
    assert net["Ingress"] is True


@covers(VOLUME, "name", "driver", "driverOpts", "labels")
def test_volume_fields(engine, applier, uid):
    def program():
        dk.Volume("vol", name=f"{uid}-vol", driver="local", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"},
                  labels=[dk.VolumeLabelArgs(label="com.example.data", value="yes")])

    applier.apply(evaluate(engine, program))
    assert applier.real_id("vol") == f"{uid}-vol"  # a volume's id is its name
    volume = engine.api.inspect_volume(f"{uid}-vol")
    assert volume["Driver"] == "local"
    assert volume["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert volume["Labels"] == {"com.example.data": "yes"}


@covers(SECRET, "name", "data", "labels")
@covers(CONFIG, "name", "data", "dataRaw", "labels")
def test_secret_and_config_fields(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        secret = dk.Secret("sec", name=f"{uid}-sec", data=b64("s3cret-value"),
                           labels=[dk.SecretLabelArgs(label="rotation", value="1")])
        config = dk.ServiceConfig("cfg", name=f"{uid}-cfg", data=b64("listen 80;"),
                                  labels=[dk.ServiceConfigLabelArgs(label="kind", value="nginx")])
        dk.ServiceConfig("raw", name=f"{uid}-raw", data_raw="plain text config")
        dk.Service("reader", name=f"{uid}-reader",
                   task_spec=dk.ServiceTaskSpecArgs(
                       container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                           image=IMAGE, commands=["sleep", "3600"],
                           secrets=[dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, secret_name=secret.name,
                                                                              file_name="app-secret")],
                           configs=[dk.ServiceTaskSpecContainerSpecConfigArgs(config_id=config.id, config_name=config.name,
                                                                              file_name="/etc/app.conf")]),
                       networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]),
                   converge_config=dk.ServiceConvergeConfigArgs(delay="200ms", timeout="60s"))

    applier.apply(evaluate(engine, program))
    secret = engine.api.inspect_secret(applier.real_id("sec"))
    assert secret["Spec"]["Name"] == f"{uid}-sec"
    assert secret["Spec"]["Labels"] == {"rotation": "1"}
    config = engine.api.inspect_config(applier.real_id("cfg"))
    assert config["Spec"]["Name"] == f"{uid}-cfg"
    assert base64.b64decode(config["Spec"]["Data"]) == b"listen 80;"
    assert config["Spec"]["Labels"] == {"kind": "nginx"}
    raw = engine.api.inspect_config(applier.real_id("raw"))
    assert base64.b64decode(raw["Spec"]["Data"]) == b"plain text config"
    # the engine never returns a secret's data: read it where a task sees it
    [task] = task_containers(engine, applier.real_id("reader"))
    assert exec_out(engine, task, ["cat", "/run/secrets/app-secret"]) == "s3cret-value"
    assert exec_out(engine, task, ["cat", "/etc/app.conf"]) == "listen 80;"


# ---------------------------------------------------------------------------------------------
# Field by field: containers (the fields the program uses) and commands
# ---------------------------------------------------------------------------------------------


@covers(CONTAINER, *mapped_paths(KINDS[CONTAINER].schema.fields))
def test_container_fields(engine, applier, uid):
    host_dir = engine.root / f"host-{uid}"
    host_dir.mkdir()
    (host_dir / "cert.pem").write_text("CERT")
    script = "#!/bin/sh\necho run\n"

    def program():
        net = dk.Network("edge", name=f"{uid}-edge", driver="bridge",
                         ipam_configs=[dk.NetworkIpamConfigArgs(subnet="10.202.0.0/24", ip_range="10.202.0.128/25")])
        vol = dk.Volume("data", name=f"{uid}-data")
        dk.Container(
            "app",
            name=f"{uid}-app",
            image=IMAGE,
            # The entrypoint runs first and gets the command as its arguments (as Alertmanager's wrapper does).
            entrypoints=["/bin/sh", "-c", 'echo "$0" > /tmp/entrypoint && exec "$@"', "entry"],
            command=["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && httpd -p 8080 -h /www && exec /bin/busybox sleep 3600"],
            envs=["MODE=test", "SECRET=abc"],
            labels=[dk.ContainerLabelArgs(label="com.carecircle.role", value="api")],
            healthcheck=dk.ContainerHealthcheckArgs(tests=["CMD-SHELL", "test -f /etc/app/app.conf"], interval="1s",
                                                    timeout="2s", start_period="1s", retries=2),
            stop_signal="SIGTERM",
            stop_timeout=7,
            ports=[dk.ContainerPortArgs(internal=8080, external=18081, ip="127.0.0.1", protocol="tcp")],
            volumes=[dk.ContainerVolumeArgs(volume_name=vol.name, container_path="/data"),
                     dk.ContainerVolumeArgs(host_path=str(host_dir / "cert.pem"), container_path="/tls/cert.pem", read_only=True)],
            networks_advanced=[dk.ContainerNetworksAdvancedArgs(name=net.name, ipv4_address="10.202.0.16", aliases=["api-1"])],
            uploads=[dk.ContainerUploadArgs(file="/etc/app/app.conf", content="listen 8080;"),
                     dk.ContainerUploadArgs(file="/usr/local/bin/run.sh", content_base64=b64(script), executable=True),
                     dk.ContainerUploadArgs(file="/etc/app/key", content="k", permissions="0600")],
            restart="unless-stopped",
            log_driver="json-file",
            log_opts={"max-size": "1m", "max-file": "2"},
            memory=64,
            cpus="0.5",
            wait=True,
            wait_timeout=30,
            destroy_grace_seconds=2,
        )

    applier.apply(evaluate(engine, program))
    cid = applier.real_id("app")
    c = engine.api.inspect_container(cid)
    assert c["Name"] == f"/{uid}-app"
    assert c["Config"]["Image"] == IMAGE
    assert c["Config"]["Cmd"][0:2] == ["sh", "-c"]
    assert c["Config"]["Entrypoint"] == ["/bin/sh", "-c", 'echo "$0" > /tmp/entrypoint && exec "$@"', "entry"]
    assert {"MODE=test", "SECRET=abc"} <= set(c["Config"]["Env"])
    assert c["Config"]["Labels"] == {"com.carecircle.role": "api"}
    assert c["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /etc/app/app.conf"], "Interval": NS,
                                          "Timeout": 2 * NS, "StartPeriod": NS, "Retries": 2}
    assert c["State"]["Health"]["Status"] == "healthy"  # wait: create returned once healthy
    assert c["Config"]["StopSignal"] == "SIGTERM"
    assert c["Config"]["StopTimeout"] == 7
    assert c["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}]}
    mounts = {m["Destination"]: m for m in c["Mounts"]}
    assert (mounts["/data"]["Type"], mounts["/data"]["Name"], mounts["/data"]["RW"]) == ("volume", f"{uid}-data", True)
    assert (mounts["/tls/cert.pem"]["Type"], mounts["/tls/cert.pem"]["Source"]) == ("bind", str(host_dir / "cert.pem"))
    assert mounts["/tls/cert.pem"]["RW"] is False
    networks = c["NetworkSettings"]["Networks"]
    assert set(networks) == {f"{uid}-edge"}  # disconnected from the default bridge
    assert networks[f"{uid}-edge"]["IPAddress"] == "10.202.0.16"
    assert "api-1" in networks[f"{uid}-edge"]["Aliases"]
    assert file_in(engine, cid, "/etc/app/app.conf") == (0o644, b"listen 8080;")
    assert file_in(engine, cid, "/usr/local/bin/run.sh") == (0o744, script.encode())
    assert file_in(engine, cid, "/etc/app/key") == (0o600, b"k")
    assert file_in(engine, cid, "/tmp/entrypoint")[1] == b"entry\n"
    assert c["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert c["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    assert c["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert c["HostConfig"]["NanoCpus"] == 500_000_000
    # the published port answers inside the engine's network namespace
    fetched = subprocess.run(["nsenter", f"--net=/var/run/netns/{engine.netns}", "/bin/busybox", "nc", "-w", "3",
                              "127.0.0.1", "18081"], input="GET / HTTP/1.0\r\n\r\n", capture_output=True, text=True,
                             timeout=10)
    assert fetched.stdout.rstrip().endswith("ok")
    # destroyGraceSeconds: the stop at delete waits that long (busybox sleep as PID 1 ignores SIGTERM)
    started = time.monotonic()
    result = applier.destroy()
    assert 1.5 < time.monotonic() - started < 9
    assert any(r.path == f"/containers/{cid}/stop" and r.params == {"t": 2} for r in result.requests)


@covers(COMMAND, "create", "environment", "stdin", "dir", "interpreter", "update", "addPreviousOutputInEnv",
        "triggers", "delete")
def test_command_fields(engine, applier, uid, monkeypatch, tmp_path):
    monkeypatch.setenv("ENGAPPLY_OUTER", "from-os-environ")
    marker = tmp_path / "deleted"

    def program(level: str, trigger: str, keep: bool = True):
        def declare():
            if keep:
                command.local.Command(
                    "cmd",
                    create='printf "%s|%s|%s|%s" "$ENGAPPLY_OUTER" "$LEVEL" "$(cat)" "$(pwd)"',
                    update='printf "updated:%s:prev=%s" "$LEVEL" "$PULUMI_COMMAND_STDOUT"',
                    delete=f'echo "$PULUMI_COMMAND_STDOUT" > {marker}',
                    environment={"LEVEL": level},
                    stdin="piped-in",
                    dir=str(tmp_path),
                    interpreter=["/bin/sh", "-u", "-c"],
                    triggers=[trigger],
                    add_previous_output_in_env=True,
                )
        return declare

    first = applier.apply(evaluate(engine, program("one", "t1")))
    assert first.commands["cmd"].stdout == f"from-os-environ|one|piped-in|{tmp_path}"
    updated = applier.apply(evaluate(engine, program("two", "t1")))
    assert updated.updated == ["cmd"]
    assert updated.commands["cmd"].stdout == f"updated:two:prev=from-os-environ|one|piped-in|{tmp_path}"
    replaced = applier.apply(evaluate(engine, program("two", "t2")))  # triggers replace: create runs again
    assert replaced.replaced == ["cmd"]
    assert [(r.phase, r.name) for r in replaced.runs] == [("create", "cmd"), ("delete", "cmd")]  # the old one's delete
    assert replaced.commands["cmd"].stdout.startswith("from-os-environ|two|")
    applier.apply(evaluate(engine, program("two", "t2", keep=False)))
    assert marker.read_text().startswith("from-os-environ|two|")  # delete ran with the last stdout
    # the interpreter is honoured: -u makes an unset variable fatal
    with pytest.raises(CommandFailedError, match="UNSET_VARIABLE"):
        applier.apply(evaluate(engine, lambda: command.local.Command("bad", create="echo $UNSET_VARIABLE",
                                                                       interpreter=["/bin/sh", "-u", "-c"])))


def test_command_failure_raises_with_stderr(engine, applier):
    program = lambda: command.local.Command("fails", create="echo out; echo 'it broke' >&2; exit 3")  # noqa: E731
    with pytest.raises(CommandFailedError) as raised:
        applier.apply(evaluate(engine, program))
    assert raised.value.exit_code == 3
    assert "it broke" in str(raised.value)


@covers("pulumi:providers:docker", "host")
@covers("docker:index/provider:Provider", "host")
def test_provider_host_routes_resources(engine, uid):
    """Resources of a per-node provider go to its host; provider "" goes to the default host."""
    applier = EngineApplier("unix:///nonexistent/engapply.sock")
    try:
        def program():
            node = dk.Provider("node1", host=engine.host)
            dk.Volume("on-node", name=f"{uid}-on-node", opts=pulumi.ResourceOptions(provider=node))

        applier.apply(evaluate(engine, program))
        assert applier.live(VOLUME, "on-node").host == engine.host
        assert engine.api.inspect_volume(f"{uid}-on-node")["Name"] == f"{uid}-on-node"
        with pytest.raises(Exception, match="nonexistent"):
            applier.apply(evaluate(engine, lambda: (program(), dk.Volume("default", name=f"{uid}-default"))))
    finally:
        applier.destroy()
        applier.close()
    assert "docker:index/provider:Provider" in KINDS  # the token the brief names, kept as an alias




# ---------------------------------------------------------------------------------------------
# Every mapped field is proven by a test (the service tests register theirs in their own module)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", sorted(KINDS))
def test_every_mapped_field_is_tested(type_):
    assert set(mapped_paths(KINDS[type_].schema.fields)) == COVERED.get(type_, set())
