#!/usr/bin/env python3
"""The web server of cairn's continuous-delivery example.

One process stands for both environments: what is PUT under /staging/ or
/production/ is stored below the root folder and served back by GET, as an
artifact server or a static site host would; GET /health answers 200; a POST
to /hook prints its body (the example's stand-in for a chat webhook).

    python3 examples/deploy/server.py                 # 127.0.0.1:8081, ./deployed
    python3 examples/deploy/server.py --port 0        # any free port, printed

Only the standard library; loopback only.
"""

import argparse
import http.server
import os
import pathlib
import sys
import tempfile


class Handler(http.server.SimpleHTTPRequestHandler):
    def target(self):
        """The file a request path names, or None when it leads outside the root."""
        relative = self.path.split("?", 1)[0].lstrip("/")
        root = pathlib.Path(self.directory).resolve()
        path = (root / relative).resolve()
        if root != path and root not in path.parents:
            return None
        return path

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, b'{"status":"ok"}\n')
            return
        super().do_GET()

    def do_PUT(self):
        path = self.target()
        if path is None or not self.path.startswith(("/staging/", "/production/")):
            self.reply(403, b"uploads go under /staging/ or /production/\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a reader sees the old file or the new one.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as staged:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                staged.write(chunk)
                remaining -= len(chunk)
        os.replace(staged.name, path)
        self.reply(201, b"stored\n")

    def do_POST(self):
        if self.path != "/hook":
            self.reply(404, b"POST /hook only\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        print(f"hook: {self.rfile.read(length).decode(errors='replace')}", flush=True)
        self.reply(200, b"ok\n")

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.command, format % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--root", default="deployed", help="where uploads are kept")
    options = parser.parse_args()
    root = pathlib.Path(options.root)
    root.mkdir(parents=True, exist_ok=True)

    def handler(*args, **kwargs):
        return Handler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", options.port), handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}, keeping uploads in {root}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
