"""The HTTP side shared by the tests' Python OTLP peers (the decoding receiver and the Prometheus
bridge): a request handler that reads the body (gunzipping it when the sender compressed it) and
answers with a status, a body and a content type, and never logs to stderr."""
import gzip
from http.server import BaseHTTPRequestHandler


class OtlpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body=b"", ctype="application/x-protobuf"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        """The request body as sent (still compressed) and as decoded."""
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            return raw, gzip.decompress(raw)
        return raw, raw

    def log_message(self, *a):
        pass
