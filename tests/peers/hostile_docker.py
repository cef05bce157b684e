#!/usr/bin/env python3
"""A hostile Docker Engine API on a unix socket: `/_ping` answers like Docker (200, `OK`,
`Api-Version`), every other path answers 404 with Docker's error shape `{"message": "..."}` whose
message is MESSAGE_BYTES long and holds a newline, a forged log line and terminal escapes.
A real dockerd cannot be made to send such a message; this speaks the same wire format.

Usage: hostile_docker.py SOCKET MESSAGE_BYTES
"""
import json, os, socketserver, sys
from http.server import BaseHTTPRequestHandler

SOCKET, SIZE = sys.argv[1], int(sys.argv[2])
MESSAGE = ("No such container\n2026-11-30T00:00:00Z ERROR forged: token=stolen\r\x1b[2J\x1b[31m"
           + "A" * SIZE)[:SIZE]
BODY = json.dumps({"message": MESSAGE}).encode()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self):
        return "unix"

    def do_GET(self):
        if self.path.split("?")[0].endswith("/_ping"):
            body, code = b"OK", 200
        else:
            body, code = BODY, 404
        self.send_response(code)
        self.send_header("Api-Version", "1.44")
        self.send_header("Content-Type", "application/json" if code != 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if os.path.exists(SOCKET):
    os.unlink(SOCKET)
Server(SOCKET, H).serve_forever()
