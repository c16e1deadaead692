"""EngineApplier against a real single-node Swarm: every mapped input lands on the engine, and the
apply semantics (diff, update, replace, delete, converge, commands) behave like `pulumi up`.

The session fixture starts a private dockerd in its own network namespace (own data-root,
exec-root, pidfile and socket), initialises a one-node swarm and builds a FROM-scratch busybox
image; its teardown stops that dockerd by pid and ends whatever is left in its namespace.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import docker
import pulumi
import pulumi_command as command
import pulumi_docker as dk
import pulumi_random as random
import pytest

from carecircle.components.common import ContainerRuntime, apply_in_container
from carecircle.components.network import Networks, NetworksArgs
from carecircle.offline import Evaluation, evaluate_config
from carecircle.provider_semantics import action_for as provider_action_for
from engine_apply import (
    COMMAND,
    CONFIG,
    CONTAINER,
    NETWORK,
    SECRET,
    SERVICE,
    TABLES,
    VOLUME,
    CommandFailedError,
    ContainerHealthError,
    ConvergeError,
    EngineApplier,
    EngineError,
    ProtectedResourceError,
    UnmappedInputError,
    UnsupportedResourceError,
    changed_paths,
    mapped_paths,
    parse_duration,
)

IMAGE = "engapply/busybox:1"
NS = 1_000_000_000  # nanoseconds per second

# ---------------------------------------------------------------------------------------------
# Which mapped input paths each test proves on the engine (checked against the tables at the end)
# ---------------------------------------------------------------------------------------------
COVERED: dict[str, set[str]] = {}


def covers(type_: str, *paths: str) -> Callable:
    COVERED.setdefault(type_, set()).update(paths)
    return lambda test: test


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


@dataclass
class Engine:
    root: Path
    host: str
    netns: str
    pid: int
    client: docker.DockerClient

    @property
    def api(self) -> docker.APIClient:
        return self.client.api


def _netns_pids(netns: str) -> list[int]:
    """Processes inside the network namespace this session created (all started by its dockerd)."""
    try:
        target = os.stat(f"/var/run/netns/{netns}")
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                st = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
                pids.append(int(entry))
    return pids


def _stop_engine(proc: subprocess.Popen | None, netns: str, root: Path) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pid in _netns_pids(netns):  # shims and containers the dockerd left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "delete", netns], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _build_image(client: docker.DockerClient, root: Path) -> None:
    context = root / "image"
    (context / "rootfs" / "bin").mkdir(parents=True)
    (context / "rootfs" / "tmp").mkdir()
    (context / "rootfs" / "tmp").chmod(0o1777)  # a tmpfs on /tmp copies this mode up (tmpcopyup)
    shutil.copy2("/bin/busybox", context / "rootfs" / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (context / "rootfs" / "bin" / applet).symlink_to("busybox")
    (context / "rootfs" / "etc").mkdir()
    (context / "rootfs" / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n")
    (context / "rootfs" / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:\n")
    (context / "Dockerfile").write_text('FROM scratch\nCOPY rootfs/ /\nCMD ["sleep", "3600"]\n')
    client.images.build(path=str(context), tag=IMAGE, rm=True)


@pytest.fixture(scope="session")
def engine():
    if os.geteuid() != 0 or not shutil.which("dockerd") or not os.path.exists("/bin/busybox"):
        pytest.skip("needs root, dockerd and busybox-static")
    root = Path(tempfile.mkdtemp(prefix="engapply-", dir="/tmp"))
    netns = f"engapply{os.getpid()}"
    proc = None
    try:
        subprocess.run(["ip", "netns", "add", netns], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        sock = root / "docker.sock"
        log = open(root / "dockerd.log", "wb")  # lives as long as the daemon
        script = (f"mount --make-rprivate /; mount -t tmpfs tmpfs /run; exec dockerd --data-root {root}/data "
                  f"--exec-root {root}/exec --pidfile {root}/dockerd.pid -H unix://{sock}")
        proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{netns}", "unshare", "-m", "sh", "-c", script],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = None
        for _ in range(120):
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}")
            if sock.exists():
                try:
                    client = docker.DockerClient(base_url=f"unix://{sock}", version="auto", timeout=120)
                    client.ping()
                    break
                except Exception:  # not listening yet
                    client = None
            time.sleep(0.25)
        assert client is not None, "dockerd did not come up"
        assert int((root / "dockerd.pid").read_text()) == proc.pid  # nsenter and unshare exec'd into it
        client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        _build_image(client, root)
        yield Engine(root=root, host=f"unix://{sock}", netns=netns, pid=proc.pid, client=client)
        client.close()
    finally:
        _stop_engine(proc, netns, root)


@pytest.fixture
def applier(engine):
    applier = EngineApplier(engine.host, delete_timeout=30, poll_interval=0.25)
    yield applier
    try:
        applier.destroy()
    finally:
        applier.close()


@pytest.fixture
def uid() -> str:
    return "t" + uuid.uuid4().hex[:6]


def evaluate(engine: Engine, program: Callable[[], None], stack: str = "engapply") -> Evaluation:
    return evaluate_config(stack, "carecircle", {"docker:host": engine.host}, set(), program=program)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def task_containers(engine: Engine, service_id: str) -> list[str]:
    tasks = engine.api.tasks(filters={"service": service_id, "desired-state": "running"})
    return [t["Status"]["ContainerStatus"]["ContainerID"] for t in tasks
            if t["Status"]["State"] == "running" and t["Status"].get("ContainerStatus")]


def single_task(engine: Engine, service_id: str, timeout: float = 15) -> str:
    """The one running task container (a start-first update may briefly show the old one too)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = task_containers(engine, service_id)
        if len(tasks) == 1 or time.monotonic() > deadline:
            assert len(tasks) == 1, tasks
            return tasks[0]
        time.sleep(0.25)


def exec_out(engine: Engine, container: str, cmd: list[str], user: str = "") -> str:
    created = engine.api.exec_create(container, cmd, user=user)
    out = engine.api.exec_start(created["Id"]).decode()
    assert engine.api.exec_inspect(created["Id"])["ExitCode"] == 0, out
    return out


def file_in(engine: Engine, container: str, path: str) -> tuple[int, bytes]:
    """(mode, content) of a file in a container, read through the archive API."""
    stream, stat = engine.api.get_archive(container, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        return stat["mode"] & 0o7777, tar.extractfile(member).read()  # type: ignore[union-attr]


def overlay(name: str) -> dk.Network:
    """The overlay network a test's services join, as the program's services would."""
    return dk.Network(f"{name}-net", name=name, driver="overlay", attachable=True)


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def test_durations_parse_like_go():
    assert parse_duration("1m30s") == 90 * NS
    assert parse_duration("500ms") == NS // 2
    assert parse_duration("1.5h") == 5400 * NS
    assert parse_duration("0") == 0
    with pytest.raises(ValueError):
        parse_duration("10")


def test_changed_paths_are_dotted_and_nested():
    old = {"taskSpec": {"containerSpec": {"image": "a", "env": {"A": "1"}}, "networksAdvanceds": [{"id": "n1"}]}}
    new = {"taskSpec": {"containerSpec": {"image": "b", "env": {"A": "2"}}, "networksAdvanceds": [{"id": "n2"}]}}
    assert changed_paths(old, new) == ["taskSpec.containerSpec.env.A", "taskSpec.containerSpec.image",
                                       "taskSpec.networksAdvanceds.id"]
    assert changed_paths({"envs": ["A=1"]}, {"envs": ["A=1", "B=2"]}) == ["envs"]
    assert changed_paths({"labels": []}, {}) == []  # absent and empty are the same input


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
# Field by field: services
# ---------------------------------------------------------------------------------------------

KITCHEN_PATHS = (
    "name", "labels", "mode.replicated.replicas",
    "taskSpec.containerSpec.image", "taskSpec.containerSpec.labels", "taskSpec.containerSpec.commands",
    "taskSpec.containerSpec.args", "taskSpec.containerSpec.hostname", "taskSpec.containerSpec.env",
    "taskSpec.containerSpec.dir", "taskSpec.containerSpec.user", "taskSpec.containerSpec.groups",
    "taskSpec.containerSpec.readOnly", "taskSpec.containerSpec.mounts[].type", "taskSpec.containerSpec.mounts[].target",
    "taskSpec.containerSpec.mounts[].source", "taskSpec.containerSpec.mounts[].readOnly",
    "taskSpec.containerSpec.mounts[].bindOptions.propagation", "taskSpec.containerSpec.mounts[].volumeOptions.noCopy",
    "taskSpec.containerSpec.mounts[].volumeOptions.labels", "taskSpec.containerSpec.mounts[].volumeOptions.driverName",
    "taskSpec.containerSpec.mounts[].volumeOptions.driverOptions", "taskSpec.containerSpec.mounts[].tmpfsOptions.sizeBytes",
    "taskSpec.containerSpec.mounts[].tmpfsOptions.mode", "taskSpec.containerSpec.stopSignal",
    "taskSpec.containerSpec.stopGracePeriod", "taskSpec.containerSpec.healthcheck.tests",
    "taskSpec.containerSpec.healthcheck.interval", "taskSpec.containerSpec.healthcheck.timeout",
    "taskSpec.containerSpec.healthcheck.startPeriod", "taskSpec.containerSpec.healthcheck.retries",
    "taskSpec.containerSpec.hosts", "taskSpec.containerSpec.dnsConfig.nameservers",
    "taskSpec.containerSpec.dnsConfig.searches", "taskSpec.containerSpec.dnsConfig.options",
    "taskSpec.containerSpec.secrets[].secretId", "taskSpec.containerSpec.secrets[].secretName",
    "taskSpec.containerSpec.secrets[].fileName", "taskSpec.containerSpec.secrets[].fileUid",
    "taskSpec.containerSpec.secrets[].fileGid", "taskSpec.containerSpec.secrets[].fileMode",
    "taskSpec.containerSpec.configs[].configId", "taskSpec.containerSpec.configs[].configName",
    "taskSpec.containerSpec.configs[].fileName", "taskSpec.containerSpec.configs[].fileUid",
    "taskSpec.containerSpec.configs[].fileGid", "taskSpec.containerSpec.configs[].fileMode",
    "taskSpec.containerSpec.isolation", "taskSpec.containerSpec.sysctl", "taskSpec.containerSpec.capAdds",
    "taskSpec.containerSpec.capDrops", "taskSpec.containerSpec.init",
    "taskSpec.resources.limits.nanoCpus", "taskSpec.resources.limits.memoryBytes",
    "taskSpec.resources.reservation.nanoCpus", "taskSpec.resources.reservation.memoryBytes",
    "taskSpec.restartPolicy.condition", "taskSpec.restartPolicy.delay", "taskSpec.restartPolicy.maxAttempts",
    "taskSpec.restartPolicy.window", "taskSpec.placement.constraints", "taskSpec.placement.prefs",
    "taskSpec.placement.maxReplicas", "taskSpec.forceUpdate", "taskSpec.runtime",
    "taskSpec.networksAdvanceds[].id", "taskSpec.networksAdvanceds[].aliases", "taskSpec.networksAdvanceds[].driverOpts",
    "taskSpec.logDriver.name", "taskSpec.logDriver.options",
    "updateConfig.parallelism", "updateConfig.delay", "updateConfig.failureAction", "updateConfig.monitor",
    "updateConfig.maxFailureRatio", "updateConfig.order",
    "rollbackConfig.parallelism", "rollbackConfig.delay", "rollbackConfig.failureAction", "rollbackConfig.monitor",
    "rollbackConfig.maxFailureRatio", "rollbackConfig.order",
    "endpointSpec.mode", "convergeConfig.delay", "convergeConfig.timeout",
)


@covers(SERVICE, *KITCHEN_PATHS)
def test_service_fields_on_a_converged_service(engine, applier, uid):
    bind_dir = engine.root / f"bind-{uid}"
    bind_dir.mkdir()
    (bind_dir / "hello").write_text("from the host")
    ready = ["CMD", "test", "-f", "/tmp/ready"]

    def program():
        net = overlay(f"{uid}-net")
        secret = dk.Secret("sec", name=f"{uid}-sec", data=b64("top"))
        config = dk.ServiceConfig("cfg", name=f"{uid}-cfg", data=b64("conf"))
        cs = dk.ServiceTaskSpecContainerSpecArgs(
            image=IMAGE,
            labels=[dk.ServiceTaskSpecContainerSpecLabelArgs(label="c.label", value="cv")],
            commands=["sh", "-c"],
            args=['echo "$GREETING" > /tmp/greeting; touch /tmp/ready; exec sleep 3600'],
            hostname="kitchen-host",
            env={"GREETING": "hello", "WITH_EQUALS": "a=b"},
            dir="/tmp",
            user="1000",
            groups=["2000"],
            read_only=True,
            mounts=[
                dk.ServiceTaskSpecContainerSpecMountArgs(
                    type="tmpfs", target="/tmp",
                    tmpfs_options=dk.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(size_bytes=8 * 1024 * 1024, mode=0o1777)),
                dk.ServiceTaskSpecContainerSpecMountArgs(
                    type="volume", target="/data", source=f"{uid}-data",
                    volume_options=dk.ServiceTaskSpecContainerSpecMountVolumeOptionsArgs(
                        no_copy=True, driver_name="local", driver_options={"type": "tmpfs", "device": "tmpfs"},
                        labels=[dk.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArgs(label="v.label", value="vv")])),
                dk.ServiceTaskSpecContainerSpecMountArgs(
                    type="bind", target="/host", source=str(bind_dir), read_only=True,
                    bind_options=dk.ServiceTaskSpecContainerSpecMountBindOptionsArgs(propagation="private")),
            ],
            stop_signal="SIGUSR1",
            stop_grace_period="3s",
            healthcheck=dk.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=ready, interval="1s", timeout="2s",
                                                                       start_period="1s", retries=3),
            hosts=[dk.ServiceTaskSpecContainerSpecHostArgs(host="db.internal", ip="10.1.2.3")],
            dns_config=dk.ServiceTaskSpecContainerSpecDnsConfigArgs(nameservers=["10.0.0.2"], searches=["example.internal"],
                                                                    options=["ndots:2"]),
            secrets=[dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, secret_name=secret.name, file_name="app",
                                                               file_uid="1000", file_gid="2000", file_mode=0o440)],
            configs=[dk.ServiceTaskSpecContainerSpecConfigArgs(config_id=config.id, config_name=config.name, file_name="/etc/c.conf",
                                                               file_uid="1000", file_gid="2000", file_mode=0o400)],
            isolation="default",
            sysctl={"net.core.somaxconn": "1024"},
            cap_adds=["NET_ADMIN"],
            cap_drops=["MKNOD"],
            init=True,
        )
        dk.Service(
            "kitchen",
            name=f"{uid}-kitchen",
            labels=[dk.ServiceLabelArgs(label="s.label", value="sv")],
            mode=dk.ServiceModeArgs(replicated=dk.ServiceModeReplicatedArgs(replicas=2)),
            task_spec=dk.ServiceTaskSpecArgs(
                container_spec=cs,
                resources=dk.ServiceTaskSpecResourcesArgs(
                    limits=dk.ServiceTaskSpecResourcesLimitsArgs(nano_cpus=500_000_000, memory_bytes=64 * 1024 * 1024),
                    reservation=dk.ServiceTaskSpecResourcesReservationArgs(nano_cpus=10_000_000, memory_bytes=4 * 1024 * 1024)),
                restart_policy=dk.ServiceTaskSpecRestartPolicyArgs(condition="on-failure", delay="1s", max_attempts=3, window="10s"),
                placement=dk.ServiceTaskSpecPlacementArgs(constraints=["node.role==manager"], prefs=["node.labels.zone"],
                                                          max_replicas=2),
                force_update=1,
                runtime="container",
                networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id, aliases=["kitchen-alias"],
                                                                           driver_opts=["com.example.opt=1"])],
                log_driver=dk.ServiceTaskSpecLogDriverArgs(name="json-file", options={"max-size": "1m"}),
            ),
            update_config=dk.ServiceUpdateConfigArgs(parallelism=2, delay="2s", failure_action="rollback", monitor="3s",
                                                     max_failure_ratio="0.5", order="start-first"),
            rollback_config=dk.ServiceRollbackConfigArgs(parallelism=1, delay="1s", failure_action="continue", monitor="4s",
                                                         max_failure_ratio="0.25", order="stop-first"),
            endpoint_spec=dk.ServiceEndpointSpecArgs(mode="dnsrr"),
            converge_config=dk.ServiceConvergeConfigArgs(delay="300ms", timeout="90s"),
        )

    started = time.monotonic()
    applier.apply(evaluate(engine, program))
    service_id = applier.real_id("kitchen")
    # convergeConfig: the apply returned only once both replicas ran, healthy
    tasks = task_containers(engine, service_id)
    assert len(tasks) == 2
    assert all(engine.api.inspect_container(t)["State"]["Health"]["Status"] == "healthy" for t in tasks)
    assert time.monotonic() - started > 0.3  # convergeConfig.delay was waited

    spec = engine.api.inspect_service(service_id)["Spec"]
    t, c = spec["TaskTemplate"], spec["TaskTemplate"]["ContainerSpec"]
    assert spec["Name"] == f"{uid}-kitchen"
    assert spec["Labels"] == {"s.label": "sv"}
    assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
    assert c["Image"] == IMAGE
    assert c["Labels"] == {"c.label": "cv"}
    assert c["Command"] == ["sh", "-c"]
    assert c["Args"][0].startswith('echo "$GREETING"')
    assert c["Hostname"] == "kitchen-host"
    assert sorted(c["Env"]) == ["GREETING=hello", "WITH_EQUALS=a=b"]
    assert c["Dir"] == "/tmp"
    assert c["User"] == "1000"
    assert c["Groups"] == ["2000"]
    assert c["ReadOnly"] is True
    mounts = {m["Target"]: m for m in c["Mounts"]}
    assert mounts["/tmp"]["Type"] == "tmpfs"
    assert mounts["/tmp"]["TmpfsOptions"] == {"SizeBytes": 8 * 1024 * 1024, "Mode": 0o1777}
    assert (mounts["/data"]["Type"], mounts["/data"]["Source"]) == ("volume", f"{uid}-data")
    assert mounts["/data"]["VolumeOptions"] == {"NoCopy": True, "Labels": {"v.label": "vv"},
                                                "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}
    assert (mounts["/host"]["Source"], mounts["/host"]["ReadOnly"]) == (str(bind_dir), True)
    assert mounts["/host"]["BindOptions"] == {"Propagation": "private"}
    assert c["StopSignal"] == "SIGUSR1"
    assert c["StopGracePeriod"] == 3 * NS
    assert c["Healthcheck"] == {"Test": ready, "Interval": NS, "Timeout": 2 * NS, "StartPeriod": NS, "Retries": 3}
    assert c["Hosts"] == ["10.1.2.3 db.internal"]
    assert c["DNSConfig"] == {"Nameservers": ["10.0.0.2"], "Search": ["example.internal"], "Options": ["ndots:2"]}
    [secret_ref] = c["Secrets"]
    assert secret_ref["SecretID"] == applier.real_id("sec")  # mock id "sec-id" resolved
    assert secret_ref["SecretName"] == f"{uid}-sec"
    assert secret_ref["File"] == {"Name": "app", "UID": "1000", "GID": "2000", "Mode": 0o440}
    [config_ref] = c["Configs"]
    assert config_ref["ConfigID"] == applier.real_id("cfg")
    assert config_ref["ConfigName"] == f"{uid}-cfg"
    assert config_ref["File"] == {"Name": "/etc/c.conf", "UID": "1000", "GID": "2000", "Mode": 0o400}
    assert c["Isolation"] == "default"
    assert c["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert c["CapabilityAdd"] == ["NET_ADMIN"]
    assert c["CapabilityDrop"] == ["MKNOD"]
    assert c["Init"] is True
    assert t["Resources"] == {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * 1024 * 1024},
                              "Reservations": {"NanoCPUs": 10_000_000, "MemoryBytes": 4 * 1024 * 1024}}
    assert t["RestartPolicy"] == {"Condition": "on-failure", "Delay": NS, "MaxAttempts": 3, "Window": 10 * NS}
    assert t["Placement"]["Constraints"] == ["node.role==manager"]
    assert t["Placement"]["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
    assert t["Placement"]["MaxReplicas"] == 2
    assert t["ForceUpdate"] == 1
    assert t["Runtime"] == "container"
    [attachment] = t["Networks"]
    assert attachment["Target"] == applier.real_id(f"{uid}-net-net")  # mock id resolved to the network's id
    assert attachment["Aliases"] == ["kitchen-alias"]
    assert attachment["DriverOpts"] == {"com.example.opt": "1"}
    assert t["LogDriver"] == {"Name": "json-file", "Options": {"max-size": "1m"}}
    assert spec["UpdateConfig"] == {"Parallelism": 2, "Delay": 2 * NS, "FailureAction": "rollback", "Monitor": 3 * NS,
                                    "MaxFailureRatio": 0.5, "Order": "start-first"}
    assert spec["RollbackConfig"] == {"Parallelism": 1, "Delay": NS, "FailureAction": "continue", "Monitor": 4 * NS,
                                      "MaxFailureRatio": 0.25, "Order": "stop-first"}
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"

    # ... and what a task container got from it
    task = tasks[0]
    inspected = engine.api.inspect_container(task)
    assert inspected["Config"]["Hostname"] == "kitchen-host"
    assert inspected["Config"]["User"] == "1000"
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["HostConfig"]["Init"] is True
    assert inspected["HostConfig"]["CapAdd"] == ["NET_ADMIN"] and inspected["HostConfig"]["CapDrop"] == ["MKNOD"]
    assert inspected["HostConfig"]["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert inspected["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert inspected["HostConfig"]["NanoCpus"] == 500_000_000
    assert inspected["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert inspected["HostConfig"]["ExtraHosts"] == ["db.internal:10.1.2.3"]
    assert inspected["Config"]["StopSignal"] == "SIGUSR1"
    assert exec_out(engine, task, ["cat", "/tmp/greeting"]) == "hello\n"
    assert exec_out(engine, task, ["pwd"]) == "/tmp\n"
    assert "2000" in exec_out(engine, task, ["id", "-G"]).split()
    assert exec_out(engine, task, ["cat", "/run/secrets/app"], user="1000") == "top"
    assert exec_out(engine, task, ["cat", "/etc/c.conf"], user="1000") == "conf"
    assert exec_out(engine, task, ["cat", "/host/hello"]) == "from the host"
    assert inspected["HostConfig"]["Dns"] == ["10.0.0.2"]  # behind the embedded DNS of the overlay network
    resolv = exec_out(engine, task, ["cat", "/etc/resolv.conf"])
    assert "search example.internal" in resolv and "ndots:2" in resolv
    assert engine.api.inspect_volume(f"{uid}-data")["Labels"] == {"v.label": "vv"}


@covers(SERVICE, "mode.global", "taskSpec.containerSpec.privileges.credentialSpec.file",
        "taskSpec.containerSpec.privileges.credentialSpec.registry",
        "taskSpec.containerSpec.privileges.seLinuxContext.disable", "taskSpec.containerSpec.privileges.seLinuxContext.user",
        "taskSpec.containerSpec.privileges.seLinuxContext.role", "taskSpec.containerSpec.privileges.seLinuxContext.type",
        "taskSpec.containerSpec.privileges.seLinuxContext.level", "taskSpec.placement.platforms[].architecture",
        "taskSpec.placement.platforms[].os", "taskSpec.resources.reservation.genericResources.namedResourcesSpecs",
        "taskSpec.resources.reservation.genericResources.discreteResourcesSpecs", "taskSpec.networksAdvanceds[].name",
        "endpointSpec.ports[].name", "endpointSpec.ports[].protocol", "endpointSpec.ports[].targetPort",
        "endpointSpec.ports[].publishedPort", "endpointSpec.ports[].publishMode",
        "auth.serverAddress", "auth.username", "auth.password")
def test_service_fields_that_do_not_run_here(engine, applier, uid):
    """Fields whose tasks cannot run on this Linux single node (Windows credential specs, SELinux,
    generic resources no node offers): the spec must still carry them."""

    def program():
        net = overlay(f"{uid}-net")
        common = dict(image=IMAGE, commands=["sleep", "3600"])
        dk.Service("globe", name=f"{uid}-globe", mode=dk.ServiceModeArgs(global_=True),
                   task_spec=dk.ServiceTaskSpecArgs(
                       container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                           **common,
                           privileges=dk.ServiceTaskSpecContainerSpecPrivilegesArgs(
                               se_linux_context=dk.ServiceTaskSpecContainerSpecPrivilegesSeLinuxContextArgs(
                                   disable=False, user="system_u", role="system_r", type="svirt_lxc_net_t", level="s0:c1"))),
                       placement=dk.ServiceTaskSpecPlacementArgs(
                           platforms=[dk.ServiceTaskSpecPlacementPlatformArgs(architecture="arm64", os="windows")]),
                       resources=dk.ServiceTaskSpecResourcesArgs(reservation=dk.ServiceTaskSpecResourcesReservationArgs(
                           generic_resources=dk.ServiceTaskSpecResourcesReservationGenericResourcesArgs(
                               named_resources_specs=["GPU=UUID1"], discrete_resources_specs=["SSD=3"]))),
                       networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(name=net.name)]),
                   endpoint_spec=dk.ServiceEndpointSpecArgs(mode="vip", ports=[
                       dk.ServiceEndpointSpecPortArgs(name="web", protocol="udp", target_port=8080, published_port=18080,
                                                      publish_mode="host")]),
                   auth=dk.ServiceAuthArgs(server_address="registry.example:5000", username="robot", password="pw"))
        dk.Service("cred", name=f"{uid}-cred",
                   task_spec=dk.ServiceTaskSpecArgs(container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                       **common,
                       privileges=dk.ServiceTaskSpecContainerSpecPrivilegesArgs(
                           credential_spec=dk.ServiceTaskSpecContainerSpecPrivilegesCredentialSpecArgs(file="spec.json")))))
        dk.Service("credreg", name=f"{uid}-credreg",
                   task_spec=dk.ServiceTaskSpecArgs(container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                       **common,
                       privileges=dk.ServiceTaskSpecContainerSpecPrivilegesArgs(
                           credential_spec=dk.ServiceTaskSpecContainerSpecPrivilegesCredentialSpecArgs(registry="HKLM-key")))))

    result = applier.apply(evaluate(engine, program))
    globe = engine.api.inspect_service(applier.real_id("globe"))["Spec"]
    assert globe["Mode"] == {"Global": {}}
    context = globe["TaskTemplate"]["ContainerSpec"]["Privileges"]["SELinuxContext"]
    assert context == {"Disable": False, "User": "system_u", "Role": "system_r", "Type": "svirt_lxc_net_t", "Level": "s0:c1"}
    assert globe["TaskTemplate"]["Placement"]["Platforms"] == [{"Architecture": "arm64", "OS": "windows"}]
    assert globe["TaskTemplate"]["Resources"]["Reservations"]["GenericResources"] == [
        {"NamedResourceSpec": {"Kind": "GPU", "Value": "UUID1"}}, {"DiscreteResourceSpec": {"Kind": "SSD", "Value": 3}}]
    # networksAdvanceds.name: the engine resolves a name to the network's id
    assert globe["TaskTemplate"]["Networks"][0]["Target"] == applier.real_id(f"{uid}-net-net")
    assert globe["EndpointSpec"] == {"Mode": "vip", "Ports": [
        {"Name": "web", "Protocol": "udp", "TargetPort": 8080, "PublishedPort": 18080, "PublishMode": "host"}]}
    # auth never reaches the spec: it is the X-Registry-Auth header of the create call
    [create] = [r for r in result.requests_to("POST", "/services/create") if r.body["Name"] == f"{uid}-globe"]
    header = create.headers["X-Registry-Auth"]
    assert base64.urlsafe_b64decode(header) == b'{"username":"robot","password":"pw","serveraddress":"registry.example:5000"}'
    cred = engine.api.inspect_service(applier.real_id("cred"))["Spec"]["TaskTemplate"]["ContainerSpec"]["Privileges"]
    assert cred["CredentialSpec"]["File"] == "spec.json"
    credreg = engine.api.inspect_service(applier.real_id("credreg"))["Spec"]["TaskTemplate"]["ContainerSpec"]["Privileges"]
    # the provider writes `registry` into CredentialSpec.File (createContainerSpec); the applier does the same
    assert credreg["CredentialSpec"]["File"] == "HKLM-key"


# ---------------------------------------------------------------------------------------------
# Field by field: containers (the fields the program uses) and commands
# ---------------------------------------------------------------------------------------------


@covers(CONTAINER, *mapped_paths(CONTAINER))
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
            command=["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && httpd -p 8080 -h /www && exec sleep 3600"],
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
    assert c["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert c["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    assert c["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert c["HostConfig"]["NanoCpus"] == 500_000_000
    # the published port answers inside the engine's network namespace
    fetched = subprocess.run(["nsenter", f"--net=/var/run/netns/{engine.netns}", "/bin/busybox", "nc", "-w", "3",
                              "127.0.0.1", "18081"], input="GET / HTTP/1.0\r\n\r\n", capture_output=True, text=True,
                             timeout=10)
    assert fetched.stdout.rstrip().endswith("ok")
    # destroyGraceSeconds: the stop at delete waits that long (sleep as PID 1 ignores SIGTERM)
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
    assert "docker:index/provider:Provider" in TABLES  # the token the brief names, kept as an alias


# ---------------------------------------------------------------------------------------------
# Apply semantics
# ---------------------------------------------------------------------------------------------


def test_unknown_inputs_and_types_are_refused(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]))

    evaluation = evaluate(engine, program)
    evaluation.get(NETWORK, f"{uid}-net-net").inputs["scope"] = "swarm"
    with pytest.raises(UnmappedInputError) as raised:
        applier.apply(evaluation)
    assert (raised.value.resource, raised.value.type, raised.value.path) == (f"{uid}-net-net", NETWORK, "scope")

    evaluation = evaluate(engine, program)
    evaluation.get(SERVICE, "svc").inputs["taskSpec"]["containerSpec"]["ulimits"] = [{"name": "nofile"}]
    with pytest.raises(UnmappedInputError, match=r"svc.*taskSpec\.containerSpec\.ulimits"):
        applier.apply(evaluation)

    evaluation = evaluate(engine, program)
    evaluation.get(SERVICE, "svc").inputs["taskSpec"]["networksAdvanceds"][0]["gwPriority"] = 1.0
    with pytest.raises(UnmappedInputError, match=r"taskSpec\.networksAdvanceds\[0\]\.gwPriority"):
        applier.apply(evaluation)
    assert applier.history[-1].requests == []  # refused before touching the engine

    image = evaluate(engine, lambda: dk.Image("img", image_name="x:1", build=dk.DockerBuildArgs(context="."), skip_push=True))
    with pytest.raises(UnsupportedResourceError, match="docker:index/image:Image"):
        applier.apply(image)


def test_secret_and_config_references_need_their_names_on_the_engine(engine, applier, uid):
    """pulumi-docker documents secret_name/config_name as display-only and optional; swarmkit
    refuses a reference without it."""

    def program(kind: str):
        def declare():
            secret = dk.Secret("sec", name=f"{uid}-sec", data=b64("x"))
            config = dk.ServiceConfig("cfg", name=f"{uid}-cfg", data=b64("x"))
            refs = ({"secrets": [dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, file_name="s")]} if kind == "secret"
                    else {"configs": [dk.ServiceTaskSpecContainerSpecConfigArgs(config_id=config.id, file_name="/c")]})
            dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
                container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE, **refs)))
        return declare

    with pytest.raises(EngineError, match="malformed secret reference"):
        applier.apply(evaluate(engine, program("secret")))
    with pytest.raises(EngineError, match="malformed config reference"):
        applier.apply(evaluate(engine, program("config")))


def test_reapply_of_the_same_evaluation_changes_nothing(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        password = random.RandomPassword("pw", length=16, special=False)  # nothing to create: its value is in the inputs
        secret = dk.Secret("sec", name=f"{uid}-sec", data=password.result.apply(b64))
        dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, secrets=[dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, secret_name=secret.name,
                                                                                file_name="s")]),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]))

    first = applier.apply(evaluate(engine, program))
    assert sorted(first.created) == sorted([f"{uid}-net-net", "pw", "sec", "svc"])
    again = applier.apply(evaluate(engine, program))
    assert (again.created, again.updated, again.replaced, again.deleted) == ([], [], [], [])
    assert sorted(again.unchanged) == sorted(first.created)
    assert again.requests == []


def _rotating_program(uid: str, version: str, content: str):
    def program():
        net = overlay(f"{uid}-net")
        secret = dk.Secret("app-secret", name=f"{uid}-secret-{version}", data=b64(content))
        dk.Service("app", name=f"{uid}-app", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sleep", "3600"],
                secrets=[dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, secret_name=secret.name,
                                                                   file_name="token")]),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]),
            update_config=dk.ServiceUpdateConfigArgs(order="start-first", monitor="1s"),
            converge_config=dk.ServiceConvergeConfigArgs(delay="200ms", timeout="60s"))
    return program


def test_secret_rotated_by_new_name_is_created_first_then_service_updated_then_old_deleted(engine, applier, uid):
    applier.apply(evaluate(engine, _rotating_program(uid, "v1", "first")))
    old_id = applier.real_id("app-secret")

    result = applier.apply(evaluate(engine, _rotating_program(uid, "v2", "second")))
    new_id = applier.real_id("app-secret")
    assert new_id != old_id
    assert result.replaced == ["app-secret"]
    assert result.updated == ["app"]
    assert "taskSpec.containerSpec.secrets.secretId" in result.changed["app"]
    assert (result.step_index("create-replacement", "app-secret") < result.step_index("update", "app")
            < result.step_index("delete-replaced", "app-secret"))
    with pytest.raises(docker.errors.NotFound):
        engine.api.inspect_secret(old_id)
    spec = engine.api.inspect_service(applier.real_id("app"))["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] == new_id
    task = single_task(engine, applier.real_id("app"))  # converged on the new secret
    assert exec_out(engine, task, ["cat", "/run/secrets/token"]) == "second"


def test_name_collision_on_create_before_replace_is_the_engine_error(engine, applier, uid):
    def program(alias: str, delete_first: bool = False):
        def declare():
            net = overlay(f"{uid}-net")
            dk.Service("svc", name=f"{uid}-fixed", task_spec=dk.ServiceTaskSpecArgs(
                container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE),
                networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id, aliases=[alias])]),
                opts=pulumi.ResourceOptions(delete_before_replace=delete_first))
        return declare

    applier.apply(evaluate(engine, program("a")))
    service_id = applier.real_id("svc")
    with pytest.raises(EngineError, match="name conflicts with an existing object") as raised:
        applier.apply(evaluate(engine, program("b")))  # networks_advanceds forces replacement (kreuzwerker#574)
    assert "create service" in str(raised.value)
    assert applier.real_id("svc") == service_id  # the old service is still the live one
    engine.api.inspect_service(service_id)
    # delete_before_replace is the way out: the old service goes first
    result = applier.apply(evaluate(engine, program("b", delete_first=True)))
    assert result.steps == [("delete-replaced", "svc"), ("create-replacement", "svc")]
    assert engine.api.inspect_service(applier.real_id("svc"))["Spec"]["TaskTemplate"]["Networks"][0]["Aliases"] == ["b"]

    def network(label: str):
        return lambda: dk.Network("net", name=f"{uid}-samename", labels=[dk.NetworkLabelArgs(label="v", value=label)])

    applier.apply(evaluate(engine, network("1")))
    with pytest.raises(EngineError, match="already exists"):
        applier.apply(evaluate(engine, network("2")))


def _health_program(uid: str, args: str, converge: bool = True, monitor: str = "2s"):
    def program():
        net = overlay(f"{uid}-net")
        dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sh", "-c"], args=[args],
                healthcheck=dk.ServiceTaskSpecContainerSpecHealthcheckArgs(
                    tests=["CMD", "test", "-f", "/tmp/ok"], interval="1s", timeout="1s", retries=1),
                stop_grace_period="1s"),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)],
            restart_policy=dk.ServiceTaskSpecRestartPolicyArgs(condition="any", delay="500ms")),
            update_config=dk.ServiceUpdateConfigArgs(failure_action="rollback", monitor=monitor, order="stop-first"),
            rollback_config=dk.ServiceRollbackConfigArgs(monitor="1s"),
            converge_config=dk.ServiceConvergeConfigArgs(delay="300ms", timeout="90s") if converge else None)
    return program


HEALTHY = "touch /tmp/ok; exec sleep 3600"


def test_service_update_that_fails_its_healthcheck_rolls_back_and_raises(engine, applier, uid):
    applier.apply(evaluate(engine, _health_program(uid, HEALTHY)))
    service_id = applier.real_id("svc")
    with pytest.raises(ConvergeError, match="rollback"):
        applier.apply(evaluate(engine, _health_program(uid, "exec sleep 3600")))  # never healthy
    service = engine.api.inspect_service(service_id)
    assert service["UpdateStatus"]["State"] in ("rollback_started", "rollback_completed")
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"] == [HEALTHY]  # the engine rolled back


def test_update_without_converge_config_returns_at_once(engine, applier, uid):
    applier.apply(evaluate(engine, _health_program(uid, HEALTHY, converge=False, monitor="30s")))
    started = time.monotonic()
    result = applier.apply(evaluate(engine, _health_program(uid, "touch /tmp/ok; exec sleep 3601", converge=False,
                                                            monitor="30s")))
    assert result.updated == ["svc"]
    assert time.monotonic() - started < 5
    # the rolling update goes on without the applier (its monitor period alone is 30 s)
    deadline = time.monotonic() + 10
    while not engine.api.inspect_service(applier.real_id("svc")).get("UpdateStatus") and time.monotonic() < deadline:
        time.sleep(0.25)
    assert engine.api.inspect_service(applier.real_id("svc"))["UpdateStatus"]["State"] == "updating"


def test_create_that_never_converges_deletes_the_service_and_raises(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        dk.Service("never", name=f"{uid}-never", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sleep", "3600"],
                healthcheck=dk.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=["CMD", "false"], interval="1s", retries=1)),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]),
            converge_config=dk.ServiceConvergeConfigArgs(delay="200ms", timeout="4s"))

    with pytest.raises(ConvergeError, match="did not converge"):
        applier.apply(evaluate(engine, program))
    assert not engine.api.services(filters={"name": f"{uid}-never"})
    with pytest.raises(KeyError):
        applier.live(SERVICE, "never")


def test_converge_config_with_global_mode_is_refused_like_the_schema(engine, applier, uid):
    program = lambda: dk.Service("g", name=f"{uid}-g", mode=dk.ServiceModeArgs(global_=True),  # noqa: E731
                                 task_spec=dk.ServiceTaskSpecArgs(container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=IMAGE)),
                                 converge_config=dk.ServiceConvergeConfigArgs(timeout="10s"))
    with pytest.raises(UnmappedInputError, match="conflicts with mode.global"):
        applier.apply(evaluate(engine, program))


def test_container_replacement_is_delete_first_and_takes_dependents_with_it(engine, applier, uid, tmp_path):
    """pulumi-docker marks containers DeleteBeforeReplace: a fixed name never collides; the command
    that triggers on the container id is deleted before it and created after it."""
    log = tmp_path / "log"

    def program(env: str):
        def declare():
            ctr = dk.Container("ctr", name=f"{uid}-ctr", image=IMAGE, envs=[env], command=["sleep", "3600"])
            command.local.Command("cfg", create=f"echo create >> {log}", delete=f"echo delete >> {log}",
                                  triggers=[ctr.id], opts=pulumi.ResourceOptions(depends_on=[ctr]))
        return declare

    applier.apply(evaluate(engine, program("V=1")))
    old = applier.real_id("ctr")
    result = applier.apply(evaluate(engine, program("V=2")))
    assert result.steps == [("delete-replaced", "cfg"), ("delete-replaced", "ctr"), ("create-replacement", "ctr"),
                            ("create-replacement", "cfg")]
    assert sorted(result.replaced) == ["cfg", "ctr"]
    assert log.read_text().split() == ["create", "delete", "create"]
    assert applier.real_id("ctr") != old
    assert "V=2" in engine.api.inspect_container(applier.real_id("ctr"))["Config"]["Env"]


def test_container_in_place_update_and_recorded_only_changes(engine, applier, uid):
    def program(restart: str, interval: str):
        return lambda: dk.Container("ctr", name=f"{uid}-ctr", image=IMAGE, command=["sleep", "3600"], restart=restart,
                                    healthcheck=dk.ContainerHealthcheckArgs(tests=["CMD", "true"], interval=interval))

    applier.apply(evaluate(engine, program("no", "5s")))
    cid = applier.real_id("ctr")
    result = applier.apply(evaluate(engine, program("always", "5s")))
    assert result.updated == ["ctr"] and applier.real_id("ctr") == cid
    assert engine.api.inspect_container(cid)["HostConfig"]["RestartPolicy"]["Name"] == "always"
    result = applier.apply(evaluate(engine, program("always", "6s")))
    assert result.no_live_change == ["ctr"]
    assert engine.api.inspect_container(cid)["Config"]["Healthcheck"]["Interval"] == 5 * NS  # only recorded


def test_container_wait_for_an_unhealthy_container_raises_and_taints_it(engine, applier, uid):
    def program(test: str, timeout: int):
        return lambda: dk.Container("ctr", name=f"{uid}-ctr", image=IMAGE, command=["sleep", "3600"], wait=True, wait_timeout=timeout,
                                    healthcheck=dk.ContainerHealthcheckArgs(tests=["CMD", test], interval="500ms", retries=1))

    with pytest.raises(ContainerHealthError, match="healthy"):
        applier.apply(evaluate(engine, program("false", 3)))
    tainted = applier.live(CONTAINER, "ctr")
    assert tainted.tainted  # kept in the state, like the provider's partial create
    # (a generous timeout: on a loaded machine the first check can take seconds)
    result = applier.apply(evaluate(engine, program("true", 30)))
    assert result.replaced == ["ctr"]
    assert engine.api.inspect_container(applier.real_id("ctr"))["State"]["Health"]["Status"] == "healthy"


def test_protected_resources_are_never_deleted_and_retained_ones_stay(engine, applier, uid):
    def program(label: str, keep: bool = True):
        def declare():
            if keep:
                dk.Volume("data", name=f"{uid}-data", labels=[dk.VolumeLabelArgs(label="v", value=label)],
                          opts=pulumi.ResourceOptions(protect=True))
            dk.Volume("cache", name=f"{uid}-cache", opts=pulumi.ResourceOptions(retain_on_delete=True))
        return declare

    applier.apply(evaluate(engine, program("1")))
    with pytest.raises(ProtectedResourceError, match="protection"):
        applier.apply(evaluate(engine, program("2")))  # a replacement
    with pytest.raises(ProtectedResourceError, match="protection"):
        applier.apply(evaluate(engine, program("1", keep=False)))  # a delete
    assert engine.api.inspect_volume(f"{uid}-data")["Labels"] == {"v": "1"}
    with pytest.raises(ProtectedResourceError):
        applier.destroy(honor_protect=True)

    def only_data():
        dk.Volume("data", name=f"{uid}-data", labels=[dk.VolumeLabelArgs(label="v", value="1")],
                  opts=pulumi.ResourceOptions(protect=True))

    result = applier.apply(evaluate(engine, only_data))
    assert result.deleted == ["cache"]
    assert engine.api.inspect_volume(f"{uid}-cache")  # retain_on_delete: gone from the state only


def test_deletes_run_in_reverse_dependency_order(engine, applier, uid):
    def program():
        net = overlay(f"{uid}-net")
        cfg = dk.ServiceConfig("cfg", name=f"{uid}-cfg", data=b64("x"))
        dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                image=IMAGE, commands=["sleep", "3600"], stop_grace_period="1s",
                configs=[dk.ServiceTaskSpecContainerSpecConfigArgs(config_id=cfg.id, config_name=cfg.name, file_name="/c")]),
            networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)]),
            converge_config=dk.ServiceConvergeConfigArgs(delay="200ms", timeout="60s"))

    applier.apply(evaluate(engine, program))
    result = applier.apply(evaluate(engine, lambda: None))
    assert sorted(result.deleted) == sorted(["svc", "cfg", f"{uid}-net-net"])
    assert result.deleted[0] == "svc"  # before the config and the network it uses
    assert not engine.api.services(filters={"name": f"{uid}-svc"})
    # a swarm network is removed once the manager has no task on it any more: it goes shortly after
    deadline = time.monotonic() + 20
    while engine.api.networks(names=[f"{uid}-net"]) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not engine.api.networks(names=[f"{uid}-net"])


def test_action_for_is_called_with_dotted_nested_paths(engine, uid):
    calls = []

    def spy(type_, paths):
        calls.append((type_, list(paths)))
        return provider_action_for(type_, paths)

    applier = EngineApplier(engine.host, action_for=spy)
    try:
        def program(image_tag: str):
            return lambda: dk.Service("svc", name=f"{uid}-svc", task_spec=dk.ServiceTaskSpecArgs(
                container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=image_tag, commands=["sleep", "3600"])))

        applier.apply(evaluate(engine, program(IMAGE)))
        engine.api.tag(IMAGE, "engapply/busybox", "2")
        result = applier.apply(evaluate(engine, program("engapply/busybox:2")))
        assert calls == [(SERVICE, ["taskSpec.containerSpec.image"])]
        assert result.updated == ["svc"]
    finally:
        applier.destroy()
        applier.close()


def test_the_programs_own_components_work_on_the_engine(engine, applier, uid):
    """The repository's Networks component, container runtime settings and apply_in_container
    (docker exec -i with DOCKER_HOST and the bundle on stdin) on a real engine."""
    runtime = ContainerRuntime(stack="engapply", environment="test", restart="unless-stopped", log_max_size="1m",
                               log_max_files=2, healthcheck_interval="1s")

    def program():
        networks = Networks("networks", NetworksArgs(edge_name=f"{uid}-edge", edge_subnet="10.203.0.0/24",
                                                     edge_dynamic_range="10.203.0.128/25", backend_name=f"{uid}-backend",
                                                     egress_name=None, labels={"com.carecircle.stack": "engapply"}))
        gateway = dk.Container("gw", name=f"{uid}-gw", image=IMAGE, command=["sleep", "3600"],
                               networks_advanced=[dk.ContainerNetworksAdvancedArgs(name=networks.edge.name, ipv4_address="10.203.0.10"),
                                                  dk.ContainerNetworksAdvancedArgs(name=networks.backend.name)],
                               healthcheck=runtime.healthcheck(["CMD", "true"], start_period="1s"), wait=True, wait_timeout=30,
                               **runtime.container_kwargs("gateway"))
        apply_in_container("gw-config", gateway, f"{uid}-gw", "cat > /tmp/bundle && echo applied", "the-bundle",
                           engine.host)

    result = applier.apply(evaluate(engine, program))
    assert result.commands["gw-config"].stdout == "applied"
    cid = applier.real_id("gw")
    assert exec_out(engine, cid, ["cat", "/tmp/bundle"]) == "the-bundle"
    backend = engine.api.inspect_network(f"{uid}-backend")
    assert backend["Internal"] is True
    c = engine.api.inspect_container(cid)
    assert c["Config"]["Labels"]["com.carecircle.role"] == "gateway"
    assert c["HostConfig"]["LogConfig"]["Config"] == {"max-size": "1m", "max-file": "2"}


def test_every_input_the_stacks_declare_is_mapped(stacks):
    """The applier can apply what staging and prod declare; dev builds an image (docker Image),
    which it refuses by name."""
    applier = EngineApplier("unix:///never-contacted.sock")
    for name in ("staging", "prod"):
        applier.validate(stacks[name])
    with pytest.raises(UnsupportedResourceError, match="docker:index/image:Image"):
        applier.validate(stacks["dev"])
    dev = Evaluation(stack="dev", resources=[r for r in stacks["dev"].resources if r.type != "docker:index/image:Image"])
    applier.validate(dev)


# ---------------------------------------------------------------------------------------------
# Every mapped field is proven by a test above
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", sorted(TABLES))
def test_every_mapped_field_is_tested(type_):
    assert set(mapped_paths(type_)) == COVERED.get(type_, set())
