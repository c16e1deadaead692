"""An HTTP/2 client for the gateway tests, on the `h2` library: it sends what a browser or curl
never would (any header name or value, a Content-Length its body does not match, many streams at
once, raw frames) and reports what came back on each stream, resets and GOAWAY included."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hyperframe.frame

from nginx_harness import client_context, joined_headers


@dataclass
class H2Response:
    """What came back on one HTTP/2 stream: `status` None when no response came (the stream was
    reset, `reset` holding the RST_STREAM error code, or the connection went away)."""

    status: Optional[int] = None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    reset: Optional[int] = None
    ended: bool = False


class H2Client:
    """HTTP/2 over TLS (ALPN h2) on one connection, able to send what a browser never would: any
    header name or value (upper case, connection-specific, duplicated pseudo-headers), a
    Content-Length the body does not match, many streams at once, and raw frames (`send_frame`,
    e.g. a header block HPACK cannot decode). Validation and normalisation of h2 are off both ways."""

    def __init__(self, port: int, server_name: str, source: Optional[str] = None, timeout: float = 5):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None)
        try:
            self.sock = client_context(alpn=["h2"]).wrap_socket(sock, server_hostname=server_name)
        except Exception:
            sock.close()
            raise
        assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.server_name = server_name
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False,
            validate_inbound_headers=False, normalize_inbound_headers=False))
        self.conn.initiate_connection()
        self.streams: dict[int, H2Response] = {}
        self.goaway: Optional[int] = None  # the GOAWAY error code, once the server sent one
        self.closed = False
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            with contextlib.suppress(OSError):
                self.sock.sendall(data)

    def headers_for(self, method: str, path: str, headers: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        return [(":method", method), (":scheme", "https"), (":authority", self.server_name), (":path", path), *headers]

    def send(self, method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: Optional[bytes] = None,
             end_stream: bool = True, raw_headers: Optional[Sequence[tuple[str, str]]] = None) -> int:
        """Open a stream (`raw_headers` replaces the whole header list, pseudo-headers included);
        returns its id without waiting for the answer."""
        stream_id = self.conn.get_next_available_stream_id()
        self.streams[stream_id] = H2Response()
        header_list = list(raw_headers) if raw_headers is not None else self.headers_for(method, path, headers)
        # Bytes as they are, as http.client sends an HTTP/1.1 header (latin-1), not h2's UTF-8.
        encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in header_list]
        self.conn.send_headers(stream_id, encoded, end_stream=end_stream and body is None)
        self._flush()
        if body is not None:
            self._send_body(stream_id, body, end_stream)
        return stream_id

    def _send_body(self, stream_id: int, body: bytes, end_stream: bool, seconds: float = 5) -> None:
        """DATA frames as the flow-control windows allow, waiting for the server's window updates;
        stops once the stream was answered or reset (a refusal before the body was read)."""
        stream = self.streams[stream_id]
        deadline = time.monotonic() + seconds
        while body and not (self.closed or stream.ended or stream.reset is not None) and time.monotonic() < deadline:
            size = min(len(body), self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if size <= 0:
                self._receive(deadline)
                continue
            self.conn.send_data(stream_id, body[:size], end_stream=end_stream and size == len(body))
            body = body[size:]
            self._flush()

    def send_frame(self, frame: hyperframe.frame.Frame) -> None:
        """A frame as it is, past h2's state machine (h2 never learns of it)."""
        self._flush()
        self.sock.sendall(frame.serialize())

    def wait(self, stream_ids: Sequence[int], seconds: float = 5) -> list[H2Response]:
        """The answers of these streams once each ended, was reset, or the connection closed."""
        deadline = time.monotonic() + seconds
        while not self.closed and not all(self.streams[s].ended or self.streams[s].reset is not None for s in stream_ids):
            if time.monotonic() > deadline:
                break
            self._receive(deadline)
        return [self.streams[s] for s in stream_ids]

    def _receive(self, deadline: float) -> None:
        """What the server sent next (until `deadline`), through h2's state machine."""
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return  # the caller's deadline decides
        except (ssl.SSLError, ConnectionResetError):
            data = b""
        if not data:
            self.closed = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        for event in events:
            self._on(event)
        self._flush()

    def _on(self, event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream:
            headers = joined_headers([(n.decode(), v.decode("latin-1")) for n, v in event.headers])
            stream.status, stream.headers = int(headers.pop(":status")), headers
        elif isinstance(event, h2.events.DataReceived) and stream:
            stream.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and stream:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream:
            stream.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event.error_code

    def request(self, method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: Optional[bytes] = None,
                seconds: float = 5) -> H2Response:
        return self.wait([self.send(method, path, headers, body)], seconds)[0]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close_connection()
            self._flush()
        self.sock.close()
