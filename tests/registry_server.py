"""A real private registry for tests: Debian's `docker-registry` (the Distribution registry, 2.8) with
htpasswd (bcrypt) authentication, serving plain HTTP inside a network namespace the test made. Engines
that pull from it treat it as insecure: a loopback address is by Docker's default, a cluster's subnet by
`--insecure-registry` (tests/swarm/cluster.py). Started and stopped by pid; its files live in `root`.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import bcrypt

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}/storage
  delete:
    enabled: true
http:
  addr: {address}:{port}
auth:
  htpasswd:
    realm: carecircle-test
    path: {root}/htpasswd
"""
PROBE = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()"


@dataclass
class RegistryServer:
    root: Path
    address: str  # where it listens (inside `netns`)
    netns: str
    port: int = 5000
    username: str = "carecircle-ci"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    process: Optional[subprocess.Popen] = None

    @property
    def host(self) -> str:
        """The registry's address as image references name it (host:port)."""
        return f"{self.address}:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        """docker-py's auth_config for pushes and pulls."""
        return {"username": self.username, "password": self.password}

    def registry_auth(self) -> list[dict[str, str]]:
        """The credentials as docker:registryAuth holds them."""
        return [{"address": self.host, "username": self.username, "password": self.password}]

    def start(self, timeout: float = 30) -> RegistryServer:
        if not REGISTRY_BINARY.exists():
            raise RuntimeError(f"{REGISTRY_BINARY} is missing: run bin/swarm-prereqs (Debian package docker-registry)")
        self.root.mkdir(parents=True, exist_ok=True)
        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=5)).decode()
        (self.root / "htpasswd").write_text(f"{self.username}:{hashed}\n")
        (self.root / "config.yml").write_text(CONFIG.format(root=self.root, address=self.address, port=self.port))
        log = open(self.root / "registry.log", "ab")
        self.process = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{self.netns}", str(REGISTRY_BINARY), "serve",
                                         str(self.root / "config.yml")],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
            probe = subprocess.run(["nsenter", f"--net=/var/run/netns/{self.netns}", sys.executable, "-c", PROBE, self.address,
                                    str(self.port)], capture_output=True, timeout=10)
            if probe.returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the registry did not listen on {self.host} within {timeout:g}s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def push(self, client, image: str, repository: str) -> str:
        """Push a local image of `client`'s engine as <host>/<repository> (name:tag); returns the reference
        pinned by its digest (<host>/<name>:<tag>@sha256:...)."""
        target = f"{self.host}/{repository}"
        name, _, tag = target.rpartition(":")
        client.images.get(image).tag(name, tag)
        for line in client.api.push(name, tag=tag, auth_config=self.auth, stream=True, decode=True):
            if "error" in line:
                raise RuntimeError(f"push of {target} failed: {line['error']}")
        digest = next(d.split("@", 1)[1] for d in client.images.get(target).attrs["RepoDigests"] if d.startswith(f"{name}@"))
        return f"{target}@{digest}"
