"""Helpers for cairn stages written in Python.

A stage is `stage.py` defining `class WitWorld(wit_world.WitWorld)` with a
`run(self, invocation)` method, built with componentize-py by
`cairn stage build`. It returns an outcome (see `outcome`) or raises
`fail(...)`. Plain `open()` reaches the sandbox's directories: `/src`,
`/in/<stage>`, `/out` and `/tmp`; `request(...)` sends HTTP requests to
the origins the pipeline grants.
"""

import json
import os
from typing import Optional

from componentize_py_types import Err, Ok
from wit_world.imports import host
# Imported here, not where used: componentize-py keeps the modules imported
# while it builds the component, and no others.
from wit_world.imports import outgoing_handler
from wit_world.imports import wasi_http_types as http
from wit_world.imports.cairn_stage_types import Invocation, Outcome

Level = host.Level


def debug(message: str) -> None:
    host.log(Level.DEBUG, str(message))


def info(message: str) -> None:
    host.log(Level.INFO, str(message))


def warn(message: str) -> None:
    host.log(Level.WARN, str(message))


def error(message: str) -> None:
    host.log(Level.ERROR, str(message))


def progress(done: int, total: int = 0) -> None:
    """Reports progress: `done` of `total` units (0 when unknown)."""
    host.progress(done, total)


def annotate(path: str, line: int, message: str, severity: Level = Level.WARN, column: Optional[int] = None) -> None:
    """Attaches a diagnostic to a line of a file (line 0: the whole file)."""
    host.annotate(host.Annotation(path=path, line=line, column=column, severity=severity, message=message))


def secret(name: str) -> Optional[str]:
    """The value of a granted secret, or None."""
    return host.secret(name)


def config(invocation: Invocation) -> dict:
    """The invocation's `with` table as a dict."""
    return dict(invocation.config)


def outcome(summary: Optional[str] = None, **outputs) -> Outcome:
    """An outcome: a summary line and named outputs (values become strings)."""
    return Outcome(summary=summary, outputs=sorted((key, str(value)) for key, value in outputs.items()))


def fail(message: str) -> Err:
    """`raise cairn.fail("...")` fails the stage with that message."""
    return Err(message)


def files(root: str = "/src") -> list:
    """Every regular file under `root`, as sorted paths relative to it."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                found.append(os.path.relpath(path, root))
    return sorted(found)


class Response:
    """An HTTP response, its body read whole."""

    def __init__(self, status: int, headers: list, body: bytes, url: str):
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def header(self, name: str) -> Optional[str]:
        """The first value of a header, by case-insensitive name."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def request(method: str, url: str, headers: Optional[dict] = None, body: bytes = b"",
            timeout: Optional[float] = None) -> Response:
    """Sends one HTTP request through `wasi:http` and reads the response.

    The host sends it: only origins the pipeline grants in `network` are
    reached (others raise, and cairn's log names the line to add), TLS is
    the host's, and a credential `http_auth` attaches to the origin is added
    without the stage seeing it. Redirects are not followed. Raises
    `RuntimeError` naming the method, the URL and what went wrong.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        raise ValueError(f"{url}: only http:// and https:// URLs can be requested")
    rest = rest.split("#", 1)[0]
    cut = min([index for index in (rest.find("/"), rest.find("?")) if index >= 0], default=len(rest))
    authority, path = rest[:cut], rest[cut:] or "/"
    if path.startswith("?"):
        path = "/" + path
    entries = [(name.lower(), str(value).encode()) for name, value in (headers or {}).items()]
    if body or method.upper() in ("POST", "PUT", "PATCH"):
        entries.append(("content-length", str(len(body)).encode()))
    outgoing = http.OutgoingRequest(http.Fields.from_list(entries))
    methods = {"GET": http.Method_Get(), "HEAD": http.Method_Head(), "POST": http.Method_Post(),
               "PUT": http.Method_Put(), "DELETE": http.Method_Delete(), "PATCH": http.Method_Patch(),
               "OPTIONS": http.Method_Options()}
    outgoing.set_method(methods.get(method.upper(), http.Method_Other(method.upper())))
    outgoing.set_scheme(http.Scheme_Https() if scheme.lower() == "https" else http.Scheme_Http())
    outgoing.set_authority(authority)
    outgoing.set_path_with_query(path)
    options = None
    if timeout is not None:
        options = http.RequestOptions()
        nanos = int(timeout * 1e9)
        options.set_connect_timeout(nanos)
        options.set_first_byte_timeout(nanos)
        options.set_between_bytes_timeout(nanos)
    outgoing_body = outgoing.body()
    try:
        pending = outgoing_handler.handle(outgoing, options)
    except Err as error:
        raise RuntimeError(f"{method} {url}: {error.value}") from None
    if body:
        with outgoing_body.write() as stream:
            offset = 0
            while offset < len(body):
                ready = stream.check_write()
                if ready == 0:
                    with stream.subscribe() as pollable:
                        pollable.block()
                    continue
                stream.write(body[offset:offset + ready])
                offset += ready
            stream.blocking_flush()
    http.OutgoingBody.finish(outgoing_body, None)
    with pending:
        with pending.subscribe() as pollable:
            pollable.block()
        result = pending.get()
    if not isinstance(result, Ok) or not isinstance(result.value, Ok):
        reason = result.value.value if isinstance(result, Ok) else "the response was lost"
        if type(reason).__name__ == "ErrorCode_HttpRequestDenied":
            reason = "refused by cairn: the stage is not granted this origin (the log names the `network` line to add)"
        raise RuntimeError(f"{method} {url}: {reason}")
    with result.value.value as response:
        status = response.status()
        with response.headers() as fields:
            received = [(name, value.decode("utf-8", "replace")) for name, value in fields.entries()]
        with response.consume() as incoming:
            chunks = []
            with incoming.stream() as stream:
                while True:
                    try:
                        chunks.append(stream.blocking_read(65536))
                    except Err:
                        break
    return Response(status, received, b"".join(chunks), url)
