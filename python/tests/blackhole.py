"""Servers that accept TCP connections and never answer (a hung proxy, a paused VM), for
the tests and the benchmark of what such a server costs the application."""

from __future__ import absolute_import

import json
import socket
import threading


class BlackHole(object):
    """Accepts TCP connections and never reads from or writes to them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held = []
        thread = threading.Thread(target=self._accept)
        thread.daemon = True
        thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except (OSError, socket.error):
                return
            self.held.append(conn)
            self._took(conn)

    def _took(self, conn):
        """A connection came in (and is held, unanswered)."""

    def close(self):
        for conn in [self.sock] + self.held:
            try:
                conn.close()
            except (OSError, socket.error):
                pass


class HangingServer(BlackHole):
    """Answers like the query service's direct writes until ``hang()``; then a black hole."""

    def __init__(self):
        self.hung = False
        BlackHole.__init__(self)

    def hang(self):
        self.hung = True

    def _took(self, conn):
        if not self.hung:
            thread = threading.Thread(target=self._answer, args=(conn,))
            thread.daemon = True
            thread.start()

    def _answer(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            body += conn.recv(65536)
        if self.hung:
            return
        try:
            asked = json.loads(body.decode("utf-8")).get("session_id")
        except (ValueError, AttributeError):
            asked = None
        answer = json.dumps({"status": "ok", "seq": 0,
                             "session_id": asked or "0190a4c5-0000-7000-8000-000000000001"})
        answer = answer.encode("utf-8")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(answer) + answer)
        conn.close()
