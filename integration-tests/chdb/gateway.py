"""Current ClickHouse (chdb-core, ClickHouse in process) behind the HTTP interface DataCat uses.

chdb has no server, so the tests put this thin HTTP front on it: it takes requests the way
ClickHouse's HTTP interface does (the SQL in the body or the `query` parameter, the rows of an
INSERT in the body, `database`, `default_format` and settings as URL parameters) and runs them
in chdb's ClickHouse engine. Only the framing is this file's: parsing, planning, RowBinary and
Native decoding and encoding, settings and errors are ClickHouse's own. ClickHouse's HTTP
server itself (compression, authentication, sessions) is not covered: DataCat talks to it
uncompressed here (`DATACAT_CLICKHOUSE_COMPRESSION=none`). See docs/clickhouse-versions.md.

Usage: python gateway.py --port PORT --data DIR. It prints "ready" once it answers.
"""

import argparse
import os
import re
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb
from chdb import session as chdb_session

# URL parameters of the HTTP interface that are not settings.
NOT_SETTINGS = {
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "compress", "decompress", "user", "password", "role", "wait_end_of_query", "quota_key",
}

INSERT_WITH_DATA = re.compile(
    r"^\s*INSERT\s+INTO\s+([\w.`]+)\s*(?:\(([^)]*)\))?\s*FORMAT\s+(\w+)\s*$",
    re.IGNORECASE | re.DOTALL,
)
TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
CODE = re.compile(r"Code: (\d+)")


class Engine:
    """One chdb session; ClickHouse in process is used by one query at a time."""

    def __init__(self, path):
        self.session = chdb_session.Session(path)
        self.lock = threading.Lock()
        self.spill = tempfile.mkdtemp(prefix="inserts-", dir=path)

    def run(self, sql, output_format, database):
        with self.lock:
            self.session.query("USE {}".format(database or "default"))
            result = self.session.query(sql, output_format)
            return result.bytes() if result is not None else b""

    def insert(self, database, table, columns, data_format, data, settings):
        """An INSERT whose rows come in the request body: ClickHouse reads them from a file."""
        with self.lock:
            self.session.query("USE {}".format(database or "default"))
            path = os.path.join(self.spill, "rows")
            with open(path, "wb") as f:
                f.write(data)
            source = "file('{}', '{}'{})".format(
                path, data_format, self._structure(table, columns, data_format))
            column_list = "({})".format(columns) if columns else ""
            sql = "INSERT INTO {} {} SELECT * FROM {}{}".format(
                table, column_list, source, settings)
            self.session.query(sql)
            return b""

    def _structure(self, table, columns, data_format):
        if data_format.lower() == "native":
            return ""  # Native carries its columns' names and types.
        described = self.session.query("DESCRIBE TABLE {}".format(table), "TabSeparated")
        types = {}
        for line in described.bytes().decode().splitlines():
            fields = line.split("\t")
            types[fields[0]] = fields[1]
        names = [c.strip().strip("`") for c in columns.split(",")] if columns else list(types)
        return ", '{}'".format(", ".join("`{}` {}".format(n, types[n]) for n in names))


def settings_clause(settings):
    if not settings:
        return ""
    parts = []
    for name, value in settings:
        if not re.match(r"^\w+$", name):
            raise ValueError("bad setting name {!r}".format(name))
        literal = value if re.match(r"^-?\d+(\.\d+)?$", value) else "'{}'".format(
            value.replace("\\", "\\\\").replace("'", "\\'"))
        parts.append("{} = {}".format(name, literal))
    return " SETTINGS " + ", ".join(parts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine = None

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        if urlsplit(self.path).path in ("/ping", "/"):
            if "query=" not in self.path:
                return self.answer(200, b"Ok.\n")
        return self.handle_query(b"")

    def do_POST(self):
        return self.handle_query(self.read_body())

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_query(self, body):
        params = parse_qsl(urlsplit(self.path).query, keep_blank_values=True)
        named = dict(params)
        database = named.get("database")
        settings = [(k, v) for k, v in params if k not in NOT_SETTINGS]
        try:
            if "query" in named:
                sql, data = named["query"], body
            else:
                sql, data = body.decode("utf-8"), b""
            insert = INSERT_WITH_DATA.match(sql)
            if insert:
                table, columns, data_format = insert.groups()
                answer = self.engine.insert(
                    database, table, columns, data_format, data, settings_clause(settings))
                return self.answer(200, answer)
            output_format = named.get("default_format", "TabSeparated")
            found = TRAILING_FORMAT.search(sql)
            if found:
                output_format = found.group(1)
                sql = sql[:found.start()]
            sql = sql.rstrip().rstrip(";")
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                sql += settings_clause(settings)
            return self.answer(200, self.engine.run(sql, output_format, database))
        except Exception as error:  # ClickHouse's refusal, passed on as its server would
            text = str(error)
            code = CODE.search(text)
            headers = {"X-ClickHouse-Exception-Code": code.group(1)} if code else {}
            return self.answer(500, text.encode("utf-8", "replace") + b"\n", headers)

    def answer(self, status, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    Handler.engine = Engine(args.data)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    version = Handler.engine.run("SELECT version()", "TabSeparated", None).decode().strip()
    print("ready: ClickHouse {} (chdb {})".format(version, chdb.__version__), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
