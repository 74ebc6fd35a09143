"""A tiny Bitrix24-like HTTP server on 127.0.0.1 for client tests: it records every request and
answers from a handler the test sets (`server.respond = fn(request) -> (status, body, headers)`)."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    json: object = None
    extra: dict = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        seen = Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), raw)
        try:
            seen.json = json.loads(raw) if raw else None
        except ValueError:
            seen.json = None
        server = self.server.stub
        with server.lock:
            server.requests.append(seen)
        status, body, headers = server.respond(seen)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


class StubServer:
    def __init__(self):
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.respond = lambda seen: (200, {"result": True, "time": {}}, {})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.stub = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
