"""Stand-in images for the swarm tests, built FROM scratch on every node (nothing can be pulled).

carecircle-standin/runtime:<hash>  the host's Node.js (/usr/bin/node, exactly the shared libraries `ldd`
                                   lists, the dynamic loader), busybox-static as /bin/sh and friends, and
                                   dev/stub-app/*.js in /app. Every other Node stand-in is FROM it.
carecircle-standin/api:1, :2       dev/stub-app/server.js; STANDIN_VERSION baked in.
carecircle-standin/api:broken      same, but /health always fails (STANDIN_BROKEN_HEALTH=1).
carecircle-standin/workers:1, :2   dev/stub-app/worker.js.
carecircle-standin/queue:1         dev/stub-app/queue.js on 6379 (the port of REDIS_URL).
carecircle-standin/nginx:<version> (build_nginx_image) the nginx root that bin/fetch-nginx unpacks, plus
                                   busybox-static for sh/wget/tar/base64/sed.

The Node images run as uid 1000 (like node:20-alpine's `node` user) and have no HEALTHCHECK of their own:
the stack's service definitions bring theirs.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .cluster import PREFIX, PREREQS_HINT, SESSION_PARENT, PrerequisiteError, SwarmCluster, SwarmError, process_start_time

REPO_ROOT = Path(__file__).resolve().parents[2]
STUB_APP = REPO_ROOT / "dev" / "stub-app"
NGINX_CACHE = REPO_ROOT / ".cache" / "nginx-current"
NODE_BIN = Path("/usr/bin/node")
BUSYBOX = Path("/bin/busybox")
REPO = "carecircle-standin"

API_VERSIONS = ("1", "2", "broken")
WORKERS_VERSIONS = ("1", "2")
QUEUE_VERSION = "1"

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:node:/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n"


def shared_libraries(binary: Path) -> tuple[list[Path], Path]:
    """The libraries `ldd` lists for `binary` (as listed, symlinks not resolved) and its loader."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30, check=True).stdout
    libs, loader = [], None
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"\S+ => (/\S+) \(0x", line)
        if m:
            libs.append(Path(m.group(1)))
            continue
        m = re.match(r"(/\S+) \(0x", line)
        if m:
            loader = Path(m.group(1))
    if loader is None:
        raise SwarmError(f"ldd found no dynamic loader for {binary}:\n{out}")
    return libs, loader


def busybox_applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, timeout=10, check=True).stdout
    return [a for a in out.split() if a and "/" not in a and a not in ("busybox",)]


def _add_file(tar: tarfile.TarFile, src: Path, arcname: str, mode: int | None = None) -> None:
    """Add src's content (symlinks followed) at arcname."""
    real = src.resolve()
    info = tar.gettarinfo(str(real), arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if mode is not None:
        info.mode = mode
    with open(real, "rb") as f:
        tar.addfile(info, f)


def _add_bytes(tar: tarfile.TarFile, arcname: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(arcname)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, arcname: str, mode: int = 0o755, uid: int = 0) -> None:
    info = tarfile.TarInfo(arcname)
    info.type, info.mode, info.mtime, info.uid, info.gid = tarfile.DIRTYPE, mode, 0, uid, uid
    tar.addfile(info)


def _add_symlink(tar: tarfile.TarFile, arcname: str, target: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
    tar.addfile(info)


def _add_busybox(tar: tarfile.TarFile, root: str, skip: set[str] = frozenset()) -> None:
    """busybox-static at <root>bin/busybox and a symlink per applet (except names in skip)."""
    _add_file(tar, BUSYBOX, f"{root}bin/busybox", mode=0o755)
    for applet in busybox_applets():
        if f"bin/{applet}" not in skip:
            _add_symlink(tar, f"{root}bin/{applet}", "busybox")


RUNTIME_CHANGES = ["ENV PATH=/usr/local/bin:/usr/bin:/bin NODE_ENV=production", "WORKDIR /app"]


def runtime_tag() -> str:
    """Content tag of the runtime image: changes when node, its libraries, busybox or a dev/stub-app
    script change."""
    libs, loader = shared_libraries(NODE_BIN)
    digest = hashlib.sha256()
    for path in [NODE_BIN, *libs, loader, BUSYBOX]:
        st = path.resolve().stat()
        digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    for path in sorted(STUB_APP.glob("*.js")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def runtime_rootfs(out: Path) -> None:
    """Write the root filesystem of the runtime image (a tar for `docker import`) to `out`."""
    libs, loader = shared_libraries(NODE_BIN)
    scripts = sorted(STUB_APP.glob("*.js"))
    with tarfile.open(out, "w") as tar:
        for d, mode in (("bin", 0o755), ("usr", 0o755), ("usr/bin", 0o755), ("etc", 0o755), ("tmp", 0o1777),
                        ("app", 0o755), ("home", 0o755), ("root", 0o700), ("run", 0o755)):
            _add_dir(tar, d, mode)
        _add_dir(tar, "home/node", 0o755, uid=1000)
        _add_file(tar, NODE_BIN, "usr/bin/node", mode=0o755)
        for lib in libs:
            _add_file(tar, lib, str(lib).lstrip("/"))
        _add_file(tar, loader, str(loader).lstrip("/"), mode=0o755)
        _add_busybox(tar, "")
        _add_bytes(tar, "etc/passwd", PASSWD.encode())
        _add_bytes(tar, "etc/group", GROUP.encode())
        _add_bytes(tar, "etc/nsswitch.conf", b"hosts: files dns\n")
        for path in scripts:
            _add_file(tar, path, "app/" + path.name)


def _small_context(dockerfile: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", dockerfile.encode())
    return buf.getvalue()


def standin_dockerfiles(runtime: str) -> dict[str, str]:
    """tag -> Dockerfile of every Node stand-in, FROM the runtime image."""
    files = {}
    for version in API_VERSIONS:
        broken = "STANDIN_BROKEN_HEALTH=1" if version == "broken" else "STANDIN_BROKEN_HEALTH=0"
        files[f"{REPO}/api:{version}"] = (
            f"FROM {runtime}\nENV STANDIN_VERSION={version} {broken} PORT=3000\n"
            "EXPOSE 3000\nUSER 1000:1000\nCMD [\"node\", \"server.js\"]\n")
    for version in WORKERS_VERSIONS:
        files[f"{REPO}/workers:{version}"] = (
            f"FROM {runtime}\nENV STANDIN_VERSION={version} WORKER_HEARTBEAT_FILE=/tmp/worker-heartbeat\n"
            "USER 1000:1000\nCMD [\"node\", \"worker.js\"]\n")
    files[f"{REPO}/queue:{QUEUE_VERSION}"] = (
        f"FROM {runtime}\nENV STANDIN_VERSION={QUEUE_VERSION} PORT=6379\n"
        "EXPOSE 6379\nUSER 1000:1000\nCMD [\"node\", \"queue.js\"]\n")
    return files


def _build(client, fileobj, tag: str, what: str) -> str:
    try:
        image, _logs = client.images.build(fileobj=fileobj, custom_context=True, tag=tag, rm=True, forcerm=True,
                                           pull=False, timeout=300)
    except Exception as exc:
        raise SwarmError(f"building {what} failed: {exc}") from exc
    return image.id


# Image archives already built in this process (clusters started later load them instead of building),
# in a directory removed at exit (or by the next session's cleanup_stale_sessions if this one is killed).
_ARCHIVES: dict[str, Path] = {}
_archive_dir: Path | None = None


def _archives() -> Path:
    global _archive_dir
    if _archive_dir is None:
        _archive_dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}images-", dir=SESSION_PARENT))
        (_archive_dir / "owner.json").write_text(json.dumps({"owner": os.getpid(), "owner_start": process_start_time(os.getpid())}))
        atexit.register(shutil.rmtree, _archive_dir, True)
    return _archive_dir


def load_archive(cluster: SwarmCluster, archive: Path, tags: list[str], targets: list[str]) -> dict[str, str]:
    """`docker load` an archive into every target (in parallel); return tag -> image id, checked to be
    the same on every target."""
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        list(pool.map(lambda n: cluster[n].docker("load", "-q", "-i", str(archive), timeout=300), targets))
    return _ids(cluster, tags, targets, targets[0])


def distribute(cluster: SwarmCluster, source: str, tags: list[str], targets: list[str],
               keep: Path | None = None) -> dict[str, str]:
    """`docker save` tags on node `source` and `docker load` them into every other target (in
    parallel), so every node holds the very same images (same ids), as a registry pull would give.
    The archive is kept at `keep` if given. Returns tag -> image id (checked identical everywhere)."""
    archive = keep or cluster.dir / f"images-{secrets.token_hex(3)}.tar"
    cluster[source].docker("save", "-o", str(archive), *tags, timeout=300)
    try:
        others = [t for t in targets if t != source]
        if others:
            load_archive(cluster, archive, tags, others)
    finally:
        if keep is None:
            archive.unlink()
    return _ids(cluster, tags, targets, source)


def _ids(cluster: SwarmCluster, tags: list[str], targets: list[str], source: str) -> dict[str, str]:
    ids = {tag: cluster[source].client.images.get(tag).id for tag in tags}
    for name in targets:
        for tag in tags:
            got = cluster[name].client.images.get(tag).id
            if got != ids[tag]:
                raise SwarmError(f"{tag} on {name} is {got}, on {source} {ids[tag]}")
    return ids


def _targets(cluster: SwarmCluster, nodes: list[str] | None) -> list[str]:
    return list(nodes or [n.name for n in cluster.nodes.values() if n.alive])


def build_standin_images(cluster: SwarmCluster, nodes: list[str] | None = None) -> dict[str, str]:
    """Import the runtime and build every Node stand-in on the first node, then load them into the
    others (a later cluster of the same process loads the saved archive into all its nodes instead).
    Returns tag -> image id."""
    for need in (NODE_BIN, BUSYBOX):
        if not need.exists():
            raise PrerequisiteError(f"{need} is missing; {PREREQS_HINT}")
    targets = _targets(cluster, nodes)
    runtime = f"{REPO}/runtime:{runtime_tag()}"
    derived = standin_dockerfiles(runtime)
    tags = [runtime, *derived]
    cached = _ARCHIVES.get(runtime)
    if cached is not None and cached.exists():
        return load_archive(cluster, cached, tags, targets)
    source = cluster[targets[0]]
    rootfs = cluster.dir / "runtime-rootfs.tar"
    try:
        runtime_rootfs(rootfs)
        repo, tag = runtime.rsplit(":", 1)
        source.client.api.import_image_from_file(str(rootfs), repository=repo, tag=tag, changes=RUNTIME_CHANGES)
    finally:
        rootfs.unlink(missing_ok=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda item: _build(source.client, io.BytesIO(_small_context(item[1])), item[0],
                                          f"{item[0]} on {source.name}"), derived.items()))
    archive = _archives() / f"standin-{runtime.rsplit(':', 1)[1]}.tar"
    ids = distribute(cluster, source.name, tags, targets, keep=archive)
    _ARCHIVES[runtime] = archive
    return ids


# --------------------------------------------------------------------------------------------------
# nginx


def nginx_root() -> Path:
    return NGINX_CACHE / "root"


def nginx_version(root: Path) -> str:
    """The version of the nginx in root, run through its own loader and libraries."""
    loader = next((p for p in (root / "usr/lib64/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")
                   if p.exists()), None)
    if loader is None:
        raise SwarmError(f"no dynamic loader in {root}")
    proc = subprocess.run([str(loader), "--library-path", f"{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu",
                           str(root / "usr/sbin/nginx"), "-v"], capture_output=True, text=True, timeout=30)
    m = re.search(r"nginx/(\S+)", proc.stderr + proc.stdout)
    if not m:
        raise SwarmError(f"cannot tell the nginx version in {root}: {proc.stderr.strip()}")
    return m.group(1)


DEFAULT_NGINX_CONF = """\
# carecircle-standin/nginx default configuration: the stack runs nginx with its own (-c ...).
pid /run/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
    access_log /dev/stdout;
    server {
        listen 8080 default_server;
        location / { return 200 "carecircle-standin nginx\\n"; }
    }
}
"""


def nginx_context(root: Path, out: Path) -> None:
    """Build context of the nginx image: the unpacked root (merged-/usr layout made explicit with
    /bin, /sbin, /lib, /lib64 links), busybox applets for what the root lacks, the directories and
    user Debian's nginx package expects."""
    with tarfile.open(out, "w") as tar:
        _add_bytes(tar, "Dockerfile", (
            "FROM scratch\nCOPY rootfs/ /\n"
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            "STOPSIGNAL SIGQUIT\n"
            'CMD ["nginx", "-g", "daemon off;"]\n').encode())
        present: set[str] = set()
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(("usr/share/doc", "usr/share/man", "usr/share/lintian", "usr/share/locale")):
                continue
            info = tar.gettarinfo(str(path), arcname="rootfs/" + rel)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            present.add(rel)
        for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            if link not in present:
                _add_symlink(tar, "rootfs/" + link, target)
        for d, mode in (("usr", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755), ("etc", 0o755),
                        ("tmp", 0o1777), ("run", 0o755), ("var", 0o755), ("var/log", 0o755),
                        ("var/log/nginx", 0o755), ("var/lib", 0o755), ("var/lib/nginx", 0o755),
                        ("var/cache", 0o755), ("var/cache/nginx", 0o755), ("etc/nginx", 0o755), ("etc/nginx/carecircle", 0o755),
                        ("var/lock", 0o755)):
            if d not in present:
                _add_dir(tar, "rootfs/" + d, mode)
        # busybox into /usr/bin (where /bin points), never over a file the root ships
        _add_file(tar, BUSYBOX, "rootfs/usr/bin/busybox", mode=0o755)
        for applet in busybox_applets():
            if f"usr/bin/{applet}" not in present and f"usr/sbin/{applet}" not in present:
                _add_symlink(tar, f"rootfs/usr/bin/{applet}", "busybox")
        if "etc/passwd" not in present:
            _add_bytes(tar, "rootfs/etc/passwd", (PASSWD + "www-data:x:33:33:www-data:/var/www:/bin/false\n").encode())
            _add_bytes(tar, "rootfs/etc/group", (GROUP + "www-data:x:33:\n").encode())
        if "etc/nsswitch.conf" not in present:
            _add_bytes(tar, "rootfs/etc/nsswitch.conf", b"hosts: files dns\n")
        if "etc/nginx/nginx.conf" not in present:  # the root has the binary only: a config to start with
            _add_bytes(tar, "rootfs/etc/nginx/nginx.conf", DEFAULT_NGINX_CONF.encode())


def build_nginx_image(cluster: SwarmCluster, root: Path | None = None, nodes: list[str] | None = None) -> dict[str, str]:
    """Build carecircle-standin/nginx:<version> (and :<version>-current, the same image under a second
    name; both tags name the nginx line, as the settings require of gatewayImage) from the root that bin/fetch-nginx
    unpacks, on the first node, and load it into the others. Returns tag -> image id."""
    root = root or nginx_root()
    if not (root / "usr/sbin/nginx").exists():
        raise PrerequisiteError(f"no nginx root at {root}: run bin/fetch-nginx first")
    version = nginx_version(root)
    tag = f"{REPO}/nginx:{version}"
    targets = _targets(cluster, nodes)
    source = cluster[targets[0]]
    context = cluster.dir / "nginx-context.tar"
    try:
        nginx_context(root, context)
        with open(context, "rb") as f:
            image_id = _build(source.client, f, tag, f"{tag} on {source.name}")
    finally:
        context.unlink(missing_ok=True)
    source.client.images.get(image_id).tag(f"{REPO}/nginx", f"{version}-current")
    return distribute(cluster, source.name, [tag, f"{tag}-current"], targets)


__all__ = ["build_standin_images", "build_nginx_image", "nginx_root", "nginx_version", "REPO",
           "API_VERSIONS", "WORKERS_VERSIONS", "QUEUE_VERSION"]
