"""A fault-injecting HTTP proxy for tests: put it between convo and a real server, then make the next
requests fail the way servers and networks do (500/429 answers, a connection dropped mid-stream, a stall),
or take the "server" down and bring it back (the port refuses connections meanwhile).

>>> proxy = FaultProxy(("127.0.0.1", 8000)); proxy.start()          # doctest: +SKIP
>>> proxy.faults += ["500", "drop"]                                   # doctest: +SKIP
"""
from __future__ import annotations

import socket
import socketserver
import threading
import time


class FaultProxy:
    """Forwards each request to ``backend`` on its own connection; ``faults`` lists what the next requests
    meet instead: an HTTP status such as ``"500"`` or ``"429"`` (answered at once), ``"drop"`` (cut after ``drop_after`` bytes of the
    answer), ``"stall"`` (no answer for ``stall_s``)."""

    def __init__(self, backend: tuple[str, int], port: int = 0, drop_after: int = 600, stall_s: float = 30.0):
        self.backend, self.drop_after, self.stall_s = backend, drop_after, stall_s
        self.faults: list[str] = []
        self.seen: list[str] = []  # what each request met
        self.bodies: list[bytes] = []  # each request's body, as sent
        self.heads: list[bytes] = []  # each request's request line and headers, as sent
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests open at once
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server = None
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        """The server dies: connections in flight are cut and the port refuses new ones."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for conn in list(self._open):
                _close(conn)
            self._open.clear()

    def up(self) -> None:
        """The server is back, on the same port."""
        self.start()

    def _next_fault(self) -> str:
        with self._lock:
            fault = self.faults.pop(0) if self.faults else "pass"
            self.seen.append(fault)
            return fault

    def _handle(self, client: socket.socket) -> None:
        with self._lock:
            self._open.add(client)
        try:
            request = _read_request(client)
            if request is None:
                return
            head, _, body = request.partition(b"\r\n\r\n")
            self.heads.append(head)
            self.bodies.append(body)
            fault = self._next_fault()
            if fault.isdigit():  # an HTTP error status, answered at once
                reason = {"429": "Too Many Requests", "500": "Internal Server Error"}.get(fault, "Error")
                body = b'{"error": "injected"}'
                client.sendall(f"HTTP/1.1 {fault} {reason}\r\nContent-Type: application/json\r\nRetry-After: 0\r\n"
                               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                return
            if fault == "stall":
                time.sleep(self.stall_s)
                return
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                self._forward(client, request, cut_after=self.drop_after if fault == "drop" else None)
            finally:
                with self._lock:
                    self.in_flight -= 1
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(client)
            _close(client)

    def _forward(self, client: socket.socket, request: bytes, cut_after: int | None) -> None:
        upstream = socket.create_connection(self.backend, timeout=600)
        with self._lock:
            self._open.add(upstream)
        try:
            upstream.sendall(request)
            sent = 0
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                if cut_after is not None and sent + len(data) > cut_after:
                    client.sendall(data[:max(0, cut_after - sent)])
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return  # closed abruptly (RST) below, mid-answer
                client.sendall(data)
                sent += len(data)
        finally:
            with self._lock:
                self._open.discard(upstream)
            _close(upstream)


def _read_request(conn: socket.socket) -> bytes | None:
    """One HTTP request (headers and Content-Length body), with ``Connection: close`` so each request has
    its own connection and the answer ends when the server closes it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    kept = [lines[0]]
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name == b"content-length":
            length = int(line.split(b":", 1)[1])
        if name in (b"connection", b"keep-alive"):
            continue
        kept.append(line)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return b"\r\n".join(kept + [b"Connection: close"]) + b"\r\n\r\n" + body


def _close(conn: socket.socket) -> None:
    try:
        conn.close()
    except OSError:
        pass
