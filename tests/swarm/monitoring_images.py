"""Stand-in images of the monitoring stack, built FROM scratch from Debian's binaries (nothing can be
pulled), shaped like the upstream images the stacks name:

carecircle-standin/prometheus:test     /bin/prometheus and /bin/promtool (Debian's `prometheus`), busybox
                                       (sh, wget, tar, base64: what prometheus-apply.sh uses, like the
                                       busybox base of prom/prometheus); runs as nobody, data in /prometheus.
carecircle-standin/alertmanager:test   /bin/alertmanager and /bin/amtool (`prometheus-alertmanager`), the
                                       notification templates Debian's build reads from /usr/share (upstream
                                       embeds them), busybox; runs as nobody, data in /alertmanager; trusts
                                       the CA given (the test's receivers), as the upstream image trusts the
                                       public ones.
carecircle-standin/nginx-exporter:test /usr/bin/nginx-prometheus-exporter (`prometheus-nginx-exporter`),
                                       nothing else (nginx/nginx-prometheus-exporter has no shell either).
carecircle-standin/blackbox-exporter:test  /bin/blackbox_exporter (`prometheus-blackbox-exporter`), where
                                       prom/blackbox-exporter has it, and /etc/blackbox_exporter for the
                                       configuration the stack uploads (TLS stacks probe each gateway's
                                       certificate with it).

The Go binaries link only libc: each image holds them, the libraries `ldd` lists and the loader.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import PREREQS_HINT, PrerequisiteError, SwarmCluster
from .images import GROUP, PASSWD, REPO, _add_busybox, _add_bytes, _add_dir, _add_file, distribute, shared_libraries

PROMETHEUS = f"{REPO}/prometheus:test"
ALERTMANAGER = f"{REPO}/alertmanager:test"
NGINX_EXPORTER = f"{REPO}/nginx-exporter:test"
BLACKBOX_EXPORTER = f"{REPO}/blackbox-exporter:test"
NOBODY = 65534

ALERTMANAGER_TEMPLATES = Path("/usr/share/prometheus/alertmanager")


@dataclass(frozen=True)
class Image:
    binaries: dict[Path, str]  # host path -> path in the image
    entrypoint: str
    busybox: bool = True
    data: str | None = None  # the data directory, owned by nobody, also the working directory
    files: dict[Path, str] = field(default_factory=dict)  # other files the binaries read


IMAGES = {
    PROMETHEUS: Image({Path("/usr/bin/prometheus"): "bin/prometheus", Path("/usr/bin/promtool"): "bin/promtool"}, "/bin/prometheus",
                      data="prometheus"),
    ALERTMANAGER: Image({Path("/usr/bin/prometheus-alertmanager"): "bin/alertmanager", Path("/usr/bin/amtool"): "bin/amtool"},
                        "/bin/alertmanager", data="alertmanager",
                        files={ALERTMANAGER_TEMPLATES / name: f"{ALERTMANAGER_TEMPLATES}/{name}".lstrip("/")
                               for name in ("default.tmpl", "email.tmpl")}),
    NGINX_EXPORTER: Image({Path("/usr/bin/prometheus-nginx-exporter"): "usr/bin/nginx-prometheus-exporter"},
                          "/usr/bin/nginx-prometheus-exporter", busybox=False),
    BLACKBOX_EXPORTER: Image({Path("/usr/bin/prometheus-blackbox-exporter"): "bin/blackbox_exporter"}, "/bin/blackbox_exporter",
                             busybox=False, data="blackbox_exporter"),
}


def rootfs(tag: str, out: Path, ca_bundle: bytes) -> None:
    """The root filesystem of one image, as a tar for `docker import`."""
    image = IMAGES[tag]
    binaries, busybox, data = image.binaries, image.busybox, image.data
    for needed in (*binaries, *image.files):
        if not needed.exists():
            raise PrerequisiteError(f"{needed} is missing; {PREREQS_HINT}")
    with tarfile.open(out, "w") as tar:
        for directory, mode in (("bin", 0o755), ("usr", 0o755), ("usr/bin", 0o755), ("etc", 0o755), ("etc/ssl", 0o755),
                                ("etc/ssl/certs", 0o755), ("tmp", 0o1777)):
            _add_dir(tar, directory, mode)
        if data:
            _add_dir(tar, data, 0o755, uid=NOBODY)
            _add_dir(tar, f"etc/{data}", 0o755)
        libraries: set[Path] = set()
        loader = None
        for binary, path in binaries.items():
            _add_file(tar, binary, path, mode=0o755)
            found, loader = shared_libraries(binary)
            libraries |= set(found)
        for library in sorted(libraries):
            _add_file(tar, library, str(library).lstrip("/"))
        if loader is not None:
            _add_file(tar, loader, str(loader).lstrip("/"), mode=0o755)
        for source, path in image.files.items():
            _add_file(tar, source, path)
        if busybox:
            _add_busybox(tar, "")
        _add_bytes(tar, "etc/passwd", PASSWD.encode())
        _add_bytes(tar, "etc/group", GROUP.encode())
        _add_bytes(tar, "etc/nsswitch.conf", b"hosts: files dns\n")
        _add_bytes(tar, "etc/ssl/certs/ca-certificates.crt", ca_bundle)


def build_monitoring_images(cluster: SwarmCluster, ca_bundle: bytes) -> dict[str, str]:
    """Import every monitoring image on the first live node and load them into the others; returns tag ->
    image id (the same on every node)."""
    source = next(node for node in cluster.nodes.values() if node.alive)
    for tag, image in IMAGES.items():
        archive = cluster.dir / f"{tag.rsplit('/', 1)[1].replace(':', '-')}-rootfs.tar"
        try:
            rootfs(tag, archive, ca_bundle)
            repository, version = tag.rsplit(":", 1)
            changes = [f"USER {NOBODY}:{NOBODY}", f'ENTRYPOINT ["{image.entrypoint}"]', "ENV PATH=/bin:/usr/bin"]
            if image.data:
                changes.append(f"WORKDIR /{image.data}")
            source.client.api.import_image_from_file(str(archive), repository=repository, tag=version, changes=changes)
        finally:
            archive.unlink(missing_ok=True)
    return distribute(cluster, source.name, list(IMAGES), [n.name for n in cluster.nodes.values() if n.alive])
