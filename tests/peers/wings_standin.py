#!/usr/bin/env python3
"""Stand-in for the Wings local API (no real Wings can run here): the routes, auth answers and
JSON shapes of docs/containers.md#calls (Wings' router, middleware and server code).

Usage: wings_standin.py PORT TOKEN SERVERS_JSON MODE_FILE
  SERVERS_JSON  file with the `GET /api/servers` array; re-read on every request
  MODE_FILE     file holding one word, re-read on every request:
                ok | slow (answer after 30 s) | garbage (200 with HTML) | truncated (200, cut JSON)
                | error (500 with a Wings-style error body)
Auth as Wings does it: the header is split on the first space, the scheme must be exactly
`Bearer`, the rest is compared in constant time. Missing or malformed -> 401 with
`WWW-Authenticate: Bearer`; wrong token -> 403. Every response carries `X-Request-Id`.
"""
import hmac, json, sys, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, TOKEN, SERVERS, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
E401 = {"error": "The required authorization heads were not present in the request."}
E403 = {"error": "You are not authorized to access this endpoint."}
E404 = {"error": "The requested resource does not exist on this instance."}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, code, body, ctype="application/json; charset=utf-8", extra=()):
        if not isinstance(body, bytes):
            body = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        parts = auth.split(" ", 1)
        if len(parts) != 2 or parts[0] != "Bearer":
            return self.send(401, E401, extra=[("WWW-Authenticate", "Bearer")])
        if not hmac.compare_digest(parts[1].encode(), TOKEN.encode()):
            return self.send(403, E403)
        mode = open(MODE).read().strip()
        if mode == "slow":
            time.sleep(30)
        if mode == "garbage":
            return self.send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if mode == "error":
            return self.send(500, {"error": "An unexpected error was encountered while processing this request",
                                   "request_id": str(uuid.uuid4())})
        path = self.path.split("?")[0]
        if path == "/api/system":
            return self.send(200, {"architecture": "amd64", "cpu_count": 2, "kernel_version": "6.1.0-28-amd64",
                                   "os": "linux", "version": "1.11.11"})
        if path == "/api/servers":
            body = open(SERVERS, "rb").read()
            if mode == "truncated":
                body = body[: len(body) // 2]
            return self.send(200, body)
        return self.send(404, E404)

    def log_message(self, *a):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
