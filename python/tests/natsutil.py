"""A few JetStream API requests over the plain NATS text protocol (stdlib only).

Just enough for the tests: create the stream ingest would create, and ask how
many messages a session's subject holds.
"""

from __future__ import absolute_import

import json
import socket

# protocol/src/subject.rs
STREAM = "DATACAT"
SESSION_SUBJECTS = "datacat.session.>"


def session_subject(session_id):
    return "datacat.session." + session_id


class NatsConnection(object):
    def __init__(self, url, timeout=10.0):
        hostport = url.split("://", 1)[-1]
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self._line()  # INFO {...}
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nPING\r\n')
        self._expect_pong()
        self.sock.sendall(b"SUB _INBOX.datacat-tests 1\r\n")

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise IOError("NATS connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8")

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _expect_pong(self):
        while True:
            line = self._line()
            if line == "PONG":
                return
            if line.startswith("-ERR"):
                raise IOError("NATS error: " + line)

    def request(self, subject, payload):
        data = json.dumps(payload).encode("utf-8")
        self.sock.sendall(("PUB %s _INBOX.datacat-tests %d\r\n" % (subject, len(data))).encode("ascii")
                          + data + b"\r\n")
        while True:
            line = self._line()
            if line == "PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith("MSG "):
                size = int(line.split()[-1])
                return json.loads(self._exact(size).decode("utf-8"))
            elif line.startswith("-ERR"):
                raise IOError("NATS error: " + line)


def ensure_stream(url):
    """Create the session stream (as datacat-ingest does at start); idempotent."""
    conn = NatsConnection(url)
    try:
        answer = conn.request("$JS.API.STREAM.CREATE." + STREAM, {
            "name": STREAM, "subjects": [SESSION_SUBJECTS], "storage": "memory",
            "retention": "limits", "duplicate_window": 120 * 10 ** 9,
        })
        error = answer.get("error")
        if error and error.get("err_code") != 10058:  # 10058: stream name already in use
            raise IOError("cannot create stream %s: %r" % (STREAM, error))
    finally:
        conn.close()


def session_message_count(url, session_id):
    """How many batches of the session the stream holds."""
    conn = NatsConnection(url)
    try:
        subject = session_subject(session_id)
        answer = conn.request("$JS.API.STREAM.INFO." + STREAM, {"subjects_filter": subject})
        if answer.get("error"):
            raise IOError("stream info failed: %r" % (answer["error"],))
        return (answer.get("state", {}).get("subjects") or {}).get(subject, 0)
    finally:
        conn.close()
