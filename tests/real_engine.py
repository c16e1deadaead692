"""A private Docker engine for the applier's tests (tests/test_engine_apply_*.py): a dockerd in its own
network namespace (own data-root, exec-root, pidfile and socket) that forms a one-node swarm and holds a
FROM-scratch busybox image. Its teardown stops that dockerd by pid and ends whatever is left in its
namespace. The fixtures (`engine`, `applier`, `uid`) are registered in tests/conftest.py.

`covers(type, *paths)` records which mapped input paths a test proves on the engine; a test checks that
every mapped path of every kind is covered.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import docker
import pulumi_docker as dk

from carecircle.offline import Evaluation, evaluate_config
from engine_apply import EngineApplier

IMAGE = "engapply/busybox:1"
NS = 1_000_000_000  # nanoseconds per second

COVERED: dict[str, set[str]] = {}


def covers(type_: str, *paths: str) -> Callable:
    COVERED.setdefault(type_, set()).update(paths)
    return lambda test: test


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
        if applet not in ("busybox", "sleep"):
            (context / "rootfs" / "bin" / applet).symlink_to("busybox")
    # `sleep` as a container's first process ignores SIGTERM (the kernel gives PID 1 no default action), so
    # every removed service and replaced task would wait out its stop grace period. This one stops on it;
    # `/bin/busybox sleep` still ignores it where a test needs that.
    sleep = context / "rootfs" / "bin" / "sleep"
    sleep.write_text("#!/bin/busybox sh\ntrap 'exit 143' TERM INT\n/bin/busybox sleep \"$@\" &\nwait $!\n")
    sleep.chmod(0o755)
    (context / "rootfs" / "etc").mkdir()
    (context / "rootfs" / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n")
    (context / "rootfs" / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:\n")
    (context / "Dockerfile").write_text('FROM scratch\nCOPY rootfs/ /\nCMD ["sleep", "3600"]\n')
    client.images.build(path=str(context), tag=IMAGE, rm=True)


def start_engine() -> Iterator[Engine]:
    """The engine, for as long as the generator is not closed (the session fixture's body)."""
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


@contextmanager
def applier_on(engine: Engine, **kwargs) -> Iterator[EngineApplier]:
    """An applier whose resources are torn down when the block ends."""
    applier = EngineApplier(engine.host, delete_timeout=30, poll_interval=0.25, **kwargs)
    try:
        yield applier
    finally:
        try:
            applier.destroy()
        finally:
            applier.close()


def new_uid() -> str:
    return "t" + uuid.uuid4().hex[:6]


def evaluate(engine: Engine, program: Callable[[], None], stack: str = "engapply",
             renamed: Optional[dict[str, int]] = None) -> Evaluation:
    return evaluate_config(stack, "carecircle", {"docker:host": engine.host}, set(), program=program, renamed=renamed)


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


