"""Local stand-ins for the places Alertmanager notifies: an HTTP(S) endpoint that records every POST
(a webhook receiver, Slack's incoming webhook, PagerDuty's Events API v2, a dead man's switch all take
JSON over HTTP) and an SMTP server with STARTTLS and authentication (aiosmtpd) that records every
message. Each listens on an address the test chooses (127.0.0.1, or the host end of a test bridge) and
is stopped by the test, even when it fails."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional


@dataclass(frozen=True)
class Received:
    at: float  # time.time() on arrival
    path: str
    body: Any  # the JSON document (or the raw text when it is not JSON)
    headers: dict[str, str]


@dataclass(frozen=True)
class Tls:
    """A CA and a server certificate it signed, for `hosts` (DNS names or IP addresses)."""

    ca: Path
    certificate: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        return context


def make_tls(directory: Path, hosts: list[str]) -> Tls:
    """A throw-away CA and a server certificate for `hosts`, with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    certificate, key, request = directory / "server.pem", directory / "server-key.pem", directory / "server.csr"
    names = ",".join(("IP:" if host.replace(".", "").isdigit() else "DNS:") + host for host in hosts)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=carecircle test receivers CA",
            "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hosts[0]}", "-keyout", str(key), "-out", str(request))
    extensions = directory / "san.cnf"
    extensions.write_text(f"subjectAltName={names}\n")
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
            "-extfile", str(extensions), "-out", str(certificate))
    return Tls(ca=ca, certificate=certificate, key=key)


class HttpReceiver:
    """Records every POST to any path; answers 200 (PagerDuty's API answers 202 with a JSON status)."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0, tls: Optional[Tls] = None):
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    document: Any = json.loads(body)
                except ValueError:
                    document = body.decode(errors="replace")
                with receiver._lock:
                    receiver.received.append(Received(time.time(), self.path, document, dict(self.headers)))
                accepted = self.path.endswith("/enqueue")
                reply = json.dumps({"status": "success", "message": "Event processed"}).encode() if accepted else b"ok"
                self.send_response(202 if accepted else 200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.server_context().wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.address, self.port = address, self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.address}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def __enter__(self) -> "HttpReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@dataclass
class SmtpReceiver:
    """An SMTP server on 127.0.0.1:`port` that offers STARTTLS, requires it and authentication, and records
    every message (sender, recipients, subject, the user that authenticated)."""

    tls: Tls
    username: str
    password: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def __enter__(self) -> "SmtpReceiver":
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = message_from_bytes(envelope.content)
                receiver.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "subject": message["Subject"],
                                          "user": session.authenticated and session.auth_data, "tls": session.ssl is not None})
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == receiver.username and auth_data.password.decode() == receiver.password
            return AuthResult(success=ok, auth_data=auth_data.login.decode())

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.certificate, self.tls.key)
        # PLAIN only: aiosmtpd's LOGIN asks "User Name" (the SASL draft), while Alertmanager, like most
        # clients, expects "Username:" as Postfix and Exchange ask.
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=context, require_starttls=True,
                                      authenticator=authenticate, auth_required=True, auth_exclude_mechanism=["LOGIN"],
                                      server_hostname="localhost")
        self._controller.start()
        self.port = self._controller.port
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
