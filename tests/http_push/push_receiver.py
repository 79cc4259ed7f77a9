#!/usr/bin/python3
"""A real HTTP receiver for the push reporters' tests: each POST it takes is
written to DIR/NNNNNN.json as {"method", "path", "headers", "body"}; while
DIR/fail exists it answers 500 instead (and counts the refusal in
DIR/refused). With --cert and --key it speaks HTTPS. Writes DIR/ready once
listening."""

import argparse
import json
import os
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8")
            if os.path.exists(os.path.join(args.dir, "fail")):
                with open(os.path.join(args.dir, "refused"), "a") as f:
                    f.write("x")
                self.send_response(500, "Receiver Down")
                self.end_headers()
                self.wfile.write(b"try later")
                return
            count[0] += 1
            record = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body}
            name = os.path.join(args.dir, "%06d.json" % count[0])
            with open(name + ".tmp", "w") as f:
                json.dump(record, f)
            os.rename(name + ".tmp", name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, fmt, *a):
            sys.stderr.write(fmt % a + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    with open(os.path.join(args.dir, "ready"), "w"):
        pass
    server.serve_forever()


if __name__ == "__main__":
    main()
