"""A real Docker Swarm on one machine: N dockerd nodes, each in its own network namespace.

Each node is a dockerd (with its own containerd) started as
    nsenter --net=/var/run/netns/<ns> unshare -m -u sh -c 'mount --make-rprivate /; mount -t tmpfs tmpfs /run; ...'
with its own --data-root, --exec-root, --pidfile, -H unix socket and --cgroup-parent under a per-session
directory /tmp/carecircle-swarm-<sid>/, and a veth on a host bridge (10.99.X.0/24; node N = .10+N).
`ip netns exec` is not used: it remounts /sys, hides the cgroup mounts and dockerd dies ("Devices cgroup
isn't mounted").

Everything the cluster creates is recorded in <session>/state.json as it is created, so `stop()` (and
`cleanup_stale_sessions()`, for sessions whose owner process died) removes exactly that: processes by pid
(verified against the node's mount namespace, its cgroup parent or the session path in the command
line), veths, netns, the bridge, the host FORWARD rule, cgroup directories, the session directory.
Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "carecircle-swarm-"
SESSION_PARENT = Path("/tmp")
PREREQS_HINT = "run bin/swarm-prereqs (as root) to install what the swarm harness needs"
DEFAULT_ADDR_POOL = "10.200.0.0/16"  # overlay subnets; far from the 10.99.X.0/24 node network

T = TypeVar("T")


class PrerequisiteError(RuntimeError):
    """Something the harness needs is missing on this machine."""


class SwarmError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------
# small helpers


def wait_for(what: str, check: Callable[[], T], timeout: float, interval: float = 0.25) -> T:
    """Call `check` until it returns a truthy value; raise TimeoutError naming `what` after `timeout` s.

    Exceptions from `check` count as "not yet"; the last one is chained to the TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
            last_exc = None
        except Exception as exc:  # "not yet", reported on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else "")) from last_exc
        time.sleep(interval)


def run(argv: list[str], *, check: bool = True, timeout: float = 30, input: bytes | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command (bounded); on failure raise SwarmError with its output."""
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise SwarmError(f"{' '.join(argv)} exited {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace').strip() or proc.stdout.decode(errors='replace').strip()}")
    return proc


def missing_prerequisites() -> list[str]:
    """What this machine lacks for the harness (empty when all is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the harness creates network namespaces and runs dockerd)")
    for tool in ("dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker-proxy", "docker",
                 "ip", "nsenter", "unshare", "iptables", "mount", "umount", "hostname", "node"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            missing.append(tool)
    if not Path("/bin/busybox").exists() or b"statically linked" not in _file_type("/bin/busybox"):
        missing.append("busybox-static (/bin/busybox, statically linked)")
    if not shutil.which("ldd"):
        missing.append("ldd")
    try:
        import docker  # noqa: F401
    except ImportError:
        missing.append("the docker Python SDK in this interpreter (pip install docker)")
    if not Path("/sys/fs/cgroup").is_dir():
        missing.append("cgroup filesystem at /sys/fs/cgroup")
    return missing


def _file_type(path: str) -> bytes:
    # `file` may be absent; a static ELF has no PT_INTERP, which ldd reports as "not a dynamic executable".
    proc = subprocess.run(["ldd", path], capture_output=True, timeout=10)
    out = proc.stdout + proc.stderr
    return b"statically linked" if (b"not a dynamic executable" in out or b"statically linked" in out) else out


def require_prerequisites() -> None:
    missing = missing_prerequisites()
    if missing:
        raise PrerequisiteError("the swarm harness cannot run here, missing: " + ", ".join(missing)
                                + f"; {PREREQS_HINT}")


# --------------------------------------------------------------------------------------------------
# /proc inspection


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    comm: str
    mntns: int | None
    cgroup: str
    cmdline: str


def _ns_inode(pid: int, ns: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{ns}").st_ino
    except OSError:
        return None


def list_processes() -> dict[int, Proc]:
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            with open(f"/proc/{pid}/cgroup", "rb") as f:
                cgroup = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        procs[pid] = Proc(pid, int(fields[1]), fields[0], comm, _ns_inode(pid, "mnt"), cgroup, cmdline)
    return procs


def _with_descendants(procs: dict[int, Proc], roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or pid not in procs:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def owned_processes(*, markers: Iterable[str], cgroup_names: Iterable[str] = ()) -> set[int]:
    """Live (non-zombie) processes that belong to a node or session: those with a marker (the node's or
    session's directory) in their command line (dockerd, containerd, the shims), every process in a mount
    namespace one of those is in (runc, docker-proxy), every process in one of the cgroup parents
    (container processes, even once re-parented away from their shim), and every descendant of those.

    Mount namespaces are only trusted through a live marked process in them: the inode number of a
    namespace that has died is soon reused by someone else's."""
    procs = list_processes()
    markers, cgroup_names = list(markers), [f"/{c}/" for c in cgroup_names]
    me = os.getpid()
    marked = {p.pid for p in procs.values() if p.pid != me and any(m in p.cmdline for m in markers)}
    mntns = {procs[pid].mntns for pid in marked if procs[pid].state != "Z"} - {None, _ns_inode(me, "mnt")}
    roots = set(marked)
    for p in procs.values():
        if p.pid != me and (p.mntns in mntns or any(c in p.cgroup for c in cgroup_names)):
            roots.add(p.pid)
    return {pid for pid in _with_descendants(procs, roots) if procs[pid].state != "Z" and pid != me}


def kill_processes(find: Callable[[], set[int]], timeout: float = 15) -> set[int]:
    """Freeze then SIGKILL everything `find` returns until it returns nothing (bounded). Freezing first
    keeps dockerd/containerd from restarting what is being killed. Returns every pid killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        # SIGSTOP until the set is stable, so nothing forks between collection and the kill
        stopped: set[int] = set()
        for _ in range(5):
            found = find()
            new = found - stopped
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= found
            if not new:
                break
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= stopped
        if not stopped:
            return killed
        gone_by = min(deadline, time.monotonic() + 2)
        while time.monotonic() < gone_by and find() & stopped:
            time.sleep(0.05)
        if time.monotonic() >= deadline:
            left = find()
            if left:
                raise SwarmError(f"processes still alive after SIGKILL: {sorted(left)}")
            return killed


# --------------------------------------------------------------------------------------------------
# cgroups


def _cgroup_mounts() -> list[tuple[str, set[str]]]:
    """(mount point, controllers) of every cgroup v1/v2 hierarchy mounted in this mount namespace."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, opts = right.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                point = left.split()[4]
                mounts.append((point, set(opts.split(",")) if fstype == "cgroup" else {""}))
    return mounts


def cgroup_dirs_for(pid: int, name: str) -> list[str]:
    """The directories dockerd (pid) creates for containers with a relative --cgroup-parent `name`,
    one per hierarchy: <mount>/<the daemon's own cgroup>/<name>."""
    dirs = []
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [ln.strip().split(":", 2) for ln in f if ln.strip()]
    for point, controllers in _cgroup_mounts():
        for _hid, ctrls, path in lines:
            if set(ctrls.split(",")) & controllers or (ctrls == "" and controllers == {""}):
                dirs.append(os.path.normpath(f"{point}/{path}/{name}"))
                break
    return dirs


def remove_cgroup_tree(path: str) -> None:
    if not os.path.isdir(path):
        return
    for root, dirnames, _files in os.walk(path, topdown=False):
        for d in dirnames:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, d))
    with contextlib.suppress(OSError):
        os.rmdir(path)


# --------------------------------------------------------------------------------------------------
# a DNS server that knows no name


class NxDomainServer:
    """Answers every DNS query over UDP with NXDOMAIN, from a thread of this process.

    The nodes' dockerd get it as --dns: Docker's embedded DNS (127.0.0.11 in containers) forwards names
    it does not know there. With no answer at all (the host's resolver is unreachable from the
    namespaces, and Docker 20.10 sends no SERVFAIL when its upstream fails) every lookup of an unknown
    name would hang until the client's timeout; a real resolver would say NXDOMAIN at once."""

    def __init__(self, address: str, port: int = 53) -> None:
        import socket
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=f"nxdomain-{address}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            if len(data) < 12:
                continue
            # same id and question; QR=1, opcode kept, RD kept, RA=1, RCODE=3; no answer records
            flags = ((data[2] & 0x79) | 0x80) << 8 | 0x80 | 3
            reply = data[:2] + flags.to_bytes(2, "big") + data[4:6] + b"\0\0\0\0\0\0" + data[12:]
            with contextlib.suppress(OSError):
                self.sock.sendto(reply, peer)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()


# --------------------------------------------------------------------------------------------------
# the cluster


@dataclass
class SwarmNode:
    name: str
    index: int
    role: str  # "manager" or "worker"
    address: str
    netns: str
    veth: str  # host side of the node's veth pair
    dir: Path
    cgroup_parent: str
    socket: Path = field(init=False)
    host_url: str = field(init=False)
    process: subprocess.Popen | None = None
    pid: int | None = None  # dockerd
    mntns: int | None = None
    node_id: str | None = None
    client: Any = None  # docker.DockerClient
    alive: bool = False

    def __post_init__(self) -> None:
        self.socket = self.dir / "docker.sock"
        self.host_url = f"unix://{self.socket}"

    @property
    def log(self) -> Path:
        return self.dir / "dockerd.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def docker(self, *args: str, timeout: float = 60, input: bytes | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
        """The docker CLI against this node."""
        return run(["docker", "-H", self.host_url, *args], timeout=timeout, input=input, check=check)

    def netns_run(self, *argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Run a host command inside this node's network namespace (not its mount namespace)."""
        return run(["nsenter", f"--net=/var/run/netns/{self.netns}", *argv], timeout=timeout, check=check)


@dataclass
class ExtraHost:
    """A network namespace on the cluster's bridge that is not a swarm node (see SwarmCluster.add_host)."""

    name: str
    address: str
    netns: str
    veth: str
    dir: Path


class SwarmCluster:
    """N dockerd nodes in network namespaces forming one swarm.

    managers, workers: how many of each (node1..nodeM are managers, then workers).
    labels: node name -> {label: value}, applied to the swarm nodes.
    iptables: dockerd's --iptables (each netns has its own tables; needed for host-mode published
        ports by DNAT, which keep the client address).
    dispatcher_heartbeat: seconds between node heartbeats (None: Swarm's default, 5 s).
    """

    def __init__(self, managers: int = 3, workers: int = 0, labels: dict[str, dict[str, str]] | None = None,
                 *, iptables: bool = True, subnet: str | None = None, dispatcher_heartbeat: float | None = None,
                 start_timeout: float = 60, api_timeout: float = 60) -> None:
        if managers < 1 or workers < 0 or managers + workers > 50:
            raise ValueError("need 1..50 nodes with at least one manager")
        self.sid = secrets.token_hex(4)
        self.short = f"ccs{self.sid[:5]}"  # interface names are limited to 15 characters
        self.managers_count, self.workers_count = managers, workers
        self.labels = labels or {}
        unknown = set(self.labels) - {f"node{i}" for i in range(1, managers + workers + 1)}
        if unknown:
            raise ValueError(f"labels for unknown nodes: {sorted(unknown)}")
        self.iptables = iptables
        self.requested_subnet = subnet
        self.dispatcher_heartbeat = dispatcher_heartbeat
        self.start_timeout = start_timeout
        self.api_timeout = api_timeout
        self.dir = SESSION_PARENT / f"{PREFIX}{self.sid}"
        self.bridge = f"{self.short}br"
        self.subnet: ipaddress.IPv4Network | None = None
        self.gateway = ""
        self.dns: NxDomainServer | None = None
        self.nodes: dict[str, SwarmNode] = {}
        self.extra_hosts: dict[str, ExtraHost] = {}
        self.timings: dict[str, float] = {}
        self.images: dict[str, str] = {}  # tag -> image id on every node (filled by images.py)
        self.state: dict[str, Any] = {}
        self._stopped = False
        self._started = False

    # -- public API --------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> SwarmNode:
        return self.nodes[name]

    def __enter__(self) -> SwarmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def managers(self) -> list[SwarmNode]:
        return [n for n in self.nodes.values() if n.role == "manager"]

    @property
    def workers(self) -> list[SwarmNode]:
        return [n for n in self.nodes.values() if n.role == "worker"]

    def manager(self) -> SwarmNode:
        """A live manager: the leader if it is alive, else any live reachable one."""
        alive = [n for n in self.managers if n.alive]
        if not alive:
            raise SwarmError("no live manager")
        for n in alive:
            with contextlib.suppress(Exception):
                for info in n.client.api.nodes(filters={"role": "manager"}):
                    if info.get("ManagerStatus", {}).get("Leader"):
                        leader = self._by_id(info["ID"])
                        if leader and leader.alive:
                            return leader
                return n
        return alive[0]

    def start(self) -> SwarmCluster:
        require_prerequisites()
        if self._started:
            return self
        self._started = True
        t0 = time.monotonic()
        try:
            cleanup_stale_sessions()
            self._setup_network()
            self.timings["network"] = time.monotonic() - t0
            t1 = time.monotonic()
            for node in self.nodes.values():
                self._launch(node)
            for node in self.nodes.values():
                self._wait_daemon(node)
            self.timings["daemons"] = time.monotonic() - t1
            t2 = time.monotonic()
            self._form_swarm()
            self.timings["swarm"] = time.monotonic() - t2
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        return self

    def kill_node(self, name: str, timeout: float = 15) -> set[int]:
        """Lose node `name` as a host loss would: its veth goes down and dockerd, containerd, every shim
        and every container process of the node are SIGKILLed together (frozen first). Its data stays."""
        node = self.nodes[name]
        run(["ip", "link", "set", node.veth, "down"], check=False)
        killed = kill_processes(lambda: self._node_processes(node), timeout=timeout)
        if node.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=5)
        node.alive = False
        with contextlib.suppress(Exception):
            node.client.close()
        return killed

    def restart_node(self, name: str, timeout: float | None = None) -> float:
        """Bring a killed node back (same data root: it rejoins with its swarm identity); returns the
        seconds until the swarm reports it Ready."""
        node = self.nodes[name]
        if node.alive:
            raise SwarmError(f"{name} is running")
        t0 = time.monotonic()
        run(["ip", "link", "set", node.veth, "up"])
        self._launch(node)
        self._wait_daemon(node)
        self.wait_node_state(name, "ready", timeout=timeout or self.start_timeout)
        return time.monotonic() - t0

    def restart_daemon(self, name: str, timeout: float = 120) -> dict[str, float]:
        """Restart node `name`'s dockerd as an engine upgrade or `systemctl restart docker` does: SIGTERM
        (the daemon leaves the swarm's gossip, stops its containers and containerd, exits), then the same
        command again. The veth stays up. Returns seconds until it exited and until it answered again."""
        node = self.nodes[name]
        if not node.alive or node.process is None:
            raise SwarmError(f"{name} is not running")
        t0 = time.monotonic()
        os.kill(node.pid, signal.SIGTERM)
        try:
            node.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SwarmError(f"dockerd of {name} still running {timeout:.0f} s after SIGTERM:\n{node.log_tail()}") from None
        exited = time.monotonic() - t0
        node.alive = False
        with contextlib.suppress(Exception):
            node.client.close()
        self._launch(node)
        self._wait_daemon(node)
        return {"exited_seconds": exited, "answering_seconds": time.monotonic() - t0}

    def add_host(self, name: str) -> ExtraHost:
        """A network namespace of its own on the cluster's bridge (not a swarm node), for a service the
        nodes reach (a registry). Torn down with the cluster; a process whose command line names a path
        under the session directory is stopped with it."""
        index = 200 + len(self.extra_hosts)
        host = ExtraHost(name=name, address=str(list(self.subnet.hosts())[index - 1]), netns=f"{PREFIX}{self.sid}-{name}",
                         veth=f"{self.short}x{len(self.extra_hosts)}", dir=self.dir / name)
        host.dir.mkdir()
        run(["ip", "netns", "add", host.netns])
        self.state["netns"].append(host.netns)
        self._save_state()
        run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
        self.state["veths"].append(host.veth)
        self._save_state()
        run(["ip", "link", "set", host.veth, "master", self.bridge, "up"])
        ns = ["ip", "-n", host.netns]
        run([*ns, "link", "set", "lo", "up"])
        run([*ns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0"])
        run([*ns, "link", "set", "eth0", "up"])
        self.extra_hosts[name] = host
        return host

    def node_state(self, name: str) -> str:
        """Status.State of node `name` as a live manager sees it (ready, down, unknown, disconnected)."""
        node = self.nodes[name]
        return self.manager().client.api.inspect_node(node.node_id)["Status"]["State"]

    def wait_node_state(self, name: str, state: str, timeout: float = 90) -> float:
        t0 = time.monotonic()
        wait_for(f"{name} to be {state}", lambda: self.node_state(name) == state, timeout, interval=0.5)
        return time.monotonic() - t0

    def swarm_nodes(self) -> dict[str, dict]:
        """hostname -> the swarm's node object (attrs), from a live manager."""
        return {n["Description"]["Hostname"]: n for n in self.manager().client.api.nodes()}

    def load_image(self, tar_path: Path, nodes: Iterable[str] | None = None) -> None:
        """`docker load` an image archive into nodes (default: every live node)."""
        for name in nodes or [n.name for n in self.nodes.values() if n.alive]:
            with open(tar_path, "rb") as f:
                self.nodes[name].client.images.load(f.read())

    def leftovers(self) -> dict[str, list]:
        """What of this cluster is still on the machine (all empty after stop())."""
        return leftovers_of(self.state or {"dir": str(self.dir)})

    def stop(self) -> None:
        """Tear everything down (idempotent; safe after a failed or partial start)."""
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                if node.client is not None:
                    node.client.close()
            node.alive = False
        if self.dns is not None:
            self.dns.stop()
        if self.state:
            teardown(self.state)
            for node in self.nodes.values():
                if node.process is not None:
                    with contextlib.suppress(Exception):
                        node.process.wait(timeout=5)

    # -- internals -----------------------------------------------------------------------------------

    def _save_state(self) -> None:
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.dir / "state.json")

    def _by_id(self, node_id: str) -> SwarmNode | None:
        return next((n for n in self.nodes.values() if n.node_id == node_id), None)

    def _node_processes(self, node: SwarmNode) -> set[int]:
        return owned_processes(markers=[f"{node.dir}/"], cgroup_names=[node.cgroup_parent])

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        used = []
        out = run(["ip", "-4", "-o", "addr", "show"]).stdout.decode()
        out += run(["ip", "-4", "route", "show", "table", "all"]).stdout.decode()
        for token in out.split():
            with contextlib.suppress(ValueError):
                if "/" in token or token.count(".") == 3:
                    used.append(ipaddress.ip_network(token, strict=False))
        candidates = [ipaddress.ip_network(self.requested_subnet)] if self.requested_subnet else \
            [ipaddress.ip_network(f"10.99.{i}.0/24") for i in range(0, 255)]
        for net in candidates:
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                return net
        raise SwarmError(f"no free subnet among {candidates[0]}..{candidates[-1]}")

    def _setup_network(self) -> None:
        self.dir.mkdir(mode=0o700)
        self.state = {"owner": os.getpid(), "owner_start": process_start_time(os.getpid()), "dir": str(self.dir),
                      "bridge": None, "forward_rule": None, "netns": [], "veths": [], "cgroup_dirs": [],
                      "cgroup_parents": [], "mntns": [], "pids": []}
        self._save_state()
        # Another session (or another project's test) may be choosing a subnet at the same moment.
        with open(SESSION_PARENT / f"{PREFIX}subnet.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.subnet = self._pick_subnet()
            hosts = list(self.subnet.hosts())
            gateway = hosts[0]
            self.gateway = str(gateway)
            run(["ip", "link", "add", self.bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0"])
            self.state["bridge"] = self.bridge
            self._save_state()
            run(["ip", "addr", "add", f"{gateway}/{self.subnet.prefixlen}", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        self.dns = NxDomainServer(self.gateway)
        # Bridged traffic passes the host's FORWARD chain (br_netfilter); a host dockerd sets its policy
        # to DROP. Accept traffic between the nodes explicitly.
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-m", "comment", "--comment",
                f"{PREFIX}{self.sid}", "-j", "ACCEPT"]
        run(["iptables", "-w", "10", "-I", *rule[:1], "1", *rule[1:]])
        self.state["forward_rule"] = rule
        self._save_state()
        total = self.managers_count + self.workers_count
        for i in range(1, total + 1):
            name = f"node{i}"
            node = SwarmNode(name=name, index=i, role="manager" if i <= self.managers_count else "worker",
                             address=str(hosts[9 + i]), netns=f"{PREFIX}{self.sid}-{name}",
                             veth=f"{self.short}n{i}", dir=self.dir / name,
                             cgroup_parent=f"{PREFIX}{self.sid}-{name}")
            self.nodes[name] = node
            node.dir.mkdir()
            (node.dir / "daemon.json").write_text("{}\n")
            run(["ip", "netns", "add", node.netns])
            self.state["netns"].append(node.netns)
            self._save_state()
            run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns])
            self.state["veths"].append(node.veth)
            self._save_state()
            run(["ip", "link", "set", node.veth, "master", self.bridge, "up"])
            ns = ["ip", "-n", node.netns]
            run([*ns, "link", "set", "lo", "up"])
            run([*ns, "addr", "add", f"{node.address}/{self.subnet.prefixlen}", "dev", "eth0"])
            run([*ns, "link", "set", "eth0", "up"])
            run([*ns, "route", "add", "default", "via", str(gateway)])

    def _launch(self, node: SwarmNode) -> None:
        with contextlib.suppress(FileNotFoundError):
            node.socket.unlink()
        args = ["dockerd", "--config-file", str(node.dir / "daemon.json"),
                "--data-root", str(node.dir / "data"), "--exec-root", str(node.dir / "exec"),
                "--pidfile", str(node.dir / "docker.pid"), "-H", node.host_url,
                "--bridge", "none", f"--iptables={'true' if self.iptables else 'false'}",
                # Names the swarm does not know: NXDOMAIN at once (see NxDomainServer).
                "--dns", self.gateway,
                # A registry a test runs on the cluster's network (add_host) answers plain HTTP.
                "--insecure-registry", str(self.subnet),
                "--cgroup-parent", node.cgroup_parent, "--storage-driver", "overlay2"]
        # In the node's own mount namespace: /run is private (containerd's and the shims' sockets
        # under /run/containerd, docker's netns files), /run/netns of the host is detached (so the
        # node pins no other namespace), and it gets its own hostname (the swarm node name).
        script = ('set -e; mount --make-rprivate /; umount -l /run/netns 2>/dev/null || true; '
                  'mount -t tmpfs -o mode=755 tmpfs /run; hostname "$0"; exec "$@"')
        # The swarm executor pulls a task's image before every start unless it is referenced by image id, or
        # by digest and present: the harness's own services use image ids (SwarmCluster.images), the stack's
        # services digests in the test registry, which the nodes pull from like any private registry.
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        with open(node.log, "ab") as log:
            node.process = subprocess.Popen(
                ["nsenter", f"--net=/var/run/netns/{node.netns}", "unshare", "-m", "-u", "--",
                 "sh", "-c", script, node.name, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        node.pid = node.process.pid  # nsenter, unshare and sh exec: the pid ends up being dockerd's
        self.state["pids"].append(node.pid)
        self._save_state()

    def _wait_daemon(self, node: SwarmNode) -> None:
        import docker

        def up() -> bool:
            if node.process.poll() is not None:
                raise SwarmError(f"dockerd of {node.name} exited {node.process.returncode}:\n{node.log_tail()}")
            return node.socket.exists() and _ping(node.socket)

        try:
            wait_for(f"dockerd of {node.name}", up, self.start_timeout, interval=0.1)
        except SwarmError:
            raise
        except TimeoutError as exc:
            raise SwarmError(f"{exc}\n{node.log_tail()}") from None
        node.mntns = _ns_inode(node.pid, "mnt")
        if node.mntns is None or node.mntns == _ns_inode(os.getpid(), "mnt"):
            raise SwarmError(f"dockerd of {node.name} is not in a mount namespace of its own")
        self.state["mntns"].append(node.mntns)
        if node.cgroup_parent not in self.state["cgroup_parents"]:
            self.state["cgroup_parents"].append(node.cgroup_parent)
            self.state["cgroup_dirs"].extend(cgroup_dirs_for(node.pid, node.cgroup_parent))
        self._save_state()
        node.client = docker.DockerClient(base_url=node.host_url, timeout=self.api_timeout)
        node.alive = True

    def _form_swarm(self) -> None:
        first = self.managers[0]
        spec: dict[str, Any] = {}
        if self.dispatcher_heartbeat:
            spec["dispatcher_heartbeat_period"] = int(self.dispatcher_heartbeat * 1e9)
        first.client.swarm.init(advertise_addr=first.address, listen_addr=f"{first.address}:2377",
                                default_addr_pool=[DEFAULT_ADDR_POOL], subnet_size=24, **spec)
        first.client.swarm.reload()
        tokens = first.client.swarm.attrs["JoinTokens"]
        first.node_id = first.client.info()["Swarm"]["NodeID"]
        remote = [f"{first.address}:2377"]
        # Managers join one at a time (each join is a raft membership change); workers after them.
        for node in self.nodes.values():
            if node is first:
                continue
            self._join(node, remote, tokens["Manager" if node.role == "manager" else "Worker"])
        self._wait_all_ready()
        self._apply_labels()

    def _join(self, node: SwarmNode, remote: list[str], token: str) -> None:
        for attempt in (1, 2):
            try:
                node.client.swarm.join(remote_addrs=remote, join_token=token, listen_addr=f"{node.address}:2377",
                                       advertise_addr=node.address)
                break
            except Exception as exc:
                # A join can time out once while the bridge settles: leave and join again.
                if attempt == 2:
                    raise SwarmError(f"{node.name} could not join the swarm: {exc}\n{node.log_tail()}") from exc
                with contextlib.suppress(Exception):
                    node.client.swarm.leave(force=True)
                self.timings.setdefault("join_retries", 0)
                self.timings["join_retries"] += 1
        node.node_id = wait_for(f"{node.name} to have a swarm node id",
                                lambda: node.client.info()["Swarm"].get("NodeID"), 30)

    def _wait_all_ready(self) -> None:
        names = set(self.nodes)

        def ready() -> bool:
            seen = self.swarm_nodes()
            for name in names:
                n = seen.get(name)
                if n is None or n["Status"]["State"] != "ready":
                    return False
                if self.nodes[name].role == "manager" and n.get("ManagerStatus", {}).get("Reachability") != "reachable":
                    return False
            return True

        wait_for("every node Ready (managers Reachable)", ready, self.start_timeout, interval=0.25)

    def _apply_labels(self) -> None:
        client = self.managers[0].client
        for name, labels in self.labels.items():
            node_id = self.nodes[name].node_id

            def update(node_id: str = node_id, labels: dict[str, str] = labels) -> bool:
                n = client.nodes.get(node_id)
                spec = dict(n.attrs["Spec"])
                spec["Labels"] = {**spec.get("Labels", {}), **labels}
                n.update(spec)
                return True

            wait_for(f"labels on {name}", update, 30, interval=0.2)


def _ping(socket: Path) -> bool:
    import http.client
    import socket as socketmod

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
            self.sock.settimeout(2)
            self.sock.connect(str(socket))

    conn = Conn("localhost", timeout=2)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def process_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2:].split()[19]
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------
# teardown, from the recorded state (also for sessions whose owner died)


def teardown(state: dict[str, Any]) -> list[str]:
    """Remove everything recorded in `state`. Returns the problems met (also printed), never raises."""
    problems: list[str] = []
    session_dir = state["dir"]

    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # teardown goes on
            problems.append(f"{what}: {exc}")

    attempt("kill processes", lambda: kill_processes(lambda: owned_processes(
        markers=[f"{session_dir}/"], cgroup_names=state.get("cgroup_parents", [])), timeout=20))
    for veth in state.get("veths", []):
        if Path(f"/sys/class/net/{veth}").exists():
            attempt(f"delete {veth}", lambda v=veth: run(["ip", "link", "del", v]))
    for ns in state.get("netns", []):
        if Path(f"/var/run/netns/{ns}").exists():
            attempt(f"delete netns {ns}", lambda n=ns: run(["ip", "netns", "del", n]))
    if state.get("bridge") and Path(f"/sys/class/net/{state['bridge']}").exists():
        attempt("delete bridge", lambda: run(["ip", "link", "del", state["bridge"]]))
    rule = state.get("forward_rule")
    if rule:
        check = run(["iptables", "-w", "10", "-C", *rule], check=False)
        if check.returncode == 0:
            attempt("delete FORWARD rule", lambda: run(["iptables", "-w", "10", "-D", *rule]))
    for d in state.get("cgroup_dirs", []):
        attempt(f"remove cgroup {d}", lambda d=d: remove_cgroup_tree(d))
    for mount_point in _mounts_under(session_dir):
        attempt(f"umount {mount_point}", lambda m=mount_point: run(["umount", "-l", m]))
    if os.path.isdir(session_dir):
        attempt("remove session dir", lambda: shutil.rmtree(session_dir))
    for p in problems:
        print(f"swarm teardown: {p}")
    return problems


def _mounts_under(path: str) -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point == path or point.startswith(path.rstrip("/") + "/"):
                points.append(point)
    return sorted(points, reverse=True)


def leftovers_of(state: dict[str, Any]) -> dict[str, list]:
    session_dir = state["dir"]
    procs = owned_processes(markers=[f"{session_dir}/"], cgroup_names=state.get("cgroup_parents", []))
    all_procs = list_processes()
    netns_dir = Path("/var/run/netns")
    netns = [ns for ns in state.get("netns", []) if (netns_dir / ns).exists()]
    links = [link for link in [*state.get("veths", []), state.get("bridge")]
             if link and Path(f"/sys/class/net/{link}").exists()]
    rule = state.get("forward_rule")
    rules = [" ".join(rule)] if rule and run(["iptables", "-w", "10", "-C", *rule], check=False).returncode == 0 else []
    return {
        "processes": sorted(f"{p} {all_procs[p].comm}" for p in procs if p in all_procs),
        "netns": netns,
        "links": links,
        "mounts": _mounts_under(session_dir),
        "cgroups": [d for d in state.get("cgroup_dirs", []) if os.path.isdir(d)],
        "iptables": rules,
        "dirs": [session_dir] if os.path.isdir(session_dir) else [],
    }


def _owner_alive(record: dict[str, Any]) -> bool:
    owner = record.get("owner")
    return bool(owner) and process_start_time(owner) is not None \
        and process_start_time(owner) == record.get("owner_start")


def cleanup_stale_sessions() -> list[str]:
    """Tear down sessions of this harness (and image archive directories) whose owner process is gone,
    e.g. a pytest killed with SIGKILL. Sessions of live processes are left alone."""
    cleaned = []
    for state_file in SESSION_PARENT.glob(f"{PREFIX}*/state.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        if not _owner_alive(state):
            teardown(state)
            cleaned.append(state["dir"])
    for owner_file in SESSION_PARENT.glob(f"{PREFIX}images-*/owner.json"):
        try:
            record = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            continue
        if not _owner_alive(record):
            shutil.rmtree(owner_file.parent, ignore_errors=True)
            cleaned.append(str(owner_file.parent))
    return cleaned
