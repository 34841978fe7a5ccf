#!/usr/bin/env python3
"""A stand-in for EC2 instance metadata (IMDSv2) on loopback, for tests: awsvpc asks it for
this machine's MAC, ENI id and address to make its ENI the mirror target.
Usage: fake_imds.py PORTFILE MAC ENI_ID IPV4
Binds 127.0.0.1 on a free port and writes the port to PORTFILE once it accepts."""
import http.server
import os
import sys

port_file, mac, eni, ip = sys.argv[1:5]
paths = {
    "/latest/meta-data/mac": mac,
    f"/latest/meta-data/network/interfaces/macs/{mac}/interface-id": eni,
    f"/latest/meta-data/network/interfaces/macs/{mac}/local-ipv4s": ip,
}


class Handler(http.server.BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path == "/latest/api/token":
            self.send_response(200)
            self.send_header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"test-token")
        else:
            self._send(404, "not found")

    def do_GET(self):
        if self.headers.get("x-aws-ec2-metadata-token") != "test-token":
            return self._send(401, "unauthorized")
        if self.path in paths:
            return self._send(200, paths[self.path])
        self._send(404, "not found")

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
tmp = port_file + ".tmp"
with open(tmp, "w") as f:
    f.write(str(server.server_address[1]))
os.rename(tmp, port_file)
server.serve_forever()
