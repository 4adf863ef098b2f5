"""A Git smart-HTTP server for tests: ``git http-backend`` behind HTTP Basic auth.

Standard library only. The server binds 127.0.0.1 on a port the OS chooses, runs
in a background thread and hands every authenticated request to ``git
http-backend`` as a CGI script, with ``REMOTE_USER`` naming the authenticated
user (which is also what lets http-backend accept pushes)::

    with serve(root, {"alice": "secret"}) as base:
        url = with_credentials(base, "alice", "secret") + "/server.git"

Each request handled is appended to ``requests`` (when given) as a
:class:`Request`, so that a test can see what went over the wire.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hmac
import os
import socketserver
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"
REALM = "git"
BACKEND_TIMEOUT = 120  # seconds; a hung backend fails the request instead of the whole run

# Variables that name or shape a repository, or that a Git process hands its
# children: inherited by http-backend they would point it at another repository.
_REPO_VARS = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH", "GIT_NAMESPACE", "GIT_PREFIX",
    "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE", "GIT_SHALLOW_FILE", "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE",
    "GIT_INTERNAL_SUPER_PREFIX", "GIT_PROTOCOL", "GIT_PROJECT_ROOT", "GIT_HTTP_EXPORT_ALL",
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE",
})
# CGI variables of whatever started the tests are not this request's.
_CGI_VARS = frozenset({
    "AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "GATEWAY_INTERFACE", "PATH_INFO",
    "PATH_TRANSLATED", "QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_USER",
    "REQUEST_METHOD", "SCRIPT_NAME", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
})
# Request headers that are not passed on as HTTP_*: the credentials, the ones
# CGI has variables of its own for, and the framing this server has undone.
_HIDDEN_HEADERS = frozenset({"authorization", "content-type", "content-length",
                             "transfer-encoding", "proxy-authorization"})


@functools.cache
def _local_env_vars() -> frozenset[str]:
    """Git's own list of repository-local variables (``git rev-parse --local-env-vars``)."""
    proc = subprocess.run(["git", "rev-parse", "--local-env-vars"], capture_output=True,
                          text=True, check=False, env=_clean_env(os.environ, frozenset()))
    return frozenset(proc.stdout.split()) if proc.returncode == 0 else frozenset()


def _clean_env(environ: Mapping[str, str], extra: frozenset[str]) -> dict[str, str]:
    return {k: v for k, v in environ.items()
            if k not in _REPO_VARS and k not in _CGI_VARS and k not in extra
            and not k.startswith("HTTP_")}


def backend_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment minus repository and CGI variables."""
    return _clean_env(environ, _local_env_vars())


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    user: str | None  # the authenticated user; None when authentication failed
    status: int
    chunked: bool = False
    content_encoding: str | None = None
    body_length: int = 0
    backend_stderr: str = ""


class BadRequest(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stageline-test-httpgit"
    timeout = 60  # an idle keep-alive connection is dropped, so shutdown never waits forever
    server: GitHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - the name BaseHTTPRequestHandler dispatches to
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    # -- one request ---------------------------------------------------------------------

    def _handle(self) -> None:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        record = Request(self.command, self.path, None, 0, chunked,
                         self.headers.get("Content-Encoding"))
        try:
            try:
                body = self._read_body()
            except BadRequest as exc:
                self.close_connection = True
                self._plain(400, f"bad request: {exc}\n", record)
                return
            record.body_length = len(body)
            user = self._authenticate()
            if user is None:
                self._plain(401, "authentication required\n", record,
                            [("WWW-Authenticate", f'Basic realm="{REALM}"')])
                return
            record.user = user
            self._cgi(user, body, record)
        finally:
            if self.server.requests is not None:
                self.server.requests.append(record)

    def _read_body(self) -> bytes:
        """Exactly the request body: de-chunked, or Content-Length bytes, or nothing."""
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise BadRequest(f"unsupported Transfer-Encoding {encoding!r}")
            return self._dechunk()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise BadRequest(f"bad Content-Length {length!r}") from None
        if size < 0:
            raise BadRequest(f"bad Content-Length {length!r}")
        return self._read_exactly(size)

    def _dechunk(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise BadRequest("truncated chunk size line")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = self.rfile.readline(65537)
                    if not trailer.endswith(b"\n"):
                        raise BadRequest("truncated chunk trailer")
                    if trailer in (b"\r\n", b"\n"):
                        return b"".join(parts)
            parts.append(self._read_exactly(size))
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("a chunk does not end with CRLF")

    def _read_exactly(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise BadRequest(f"the body ended after {len(data)} of {size} bytes")
        return data

    def _authenticate(self) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        expected = self.server.users.get(user)
        if not sep or expected is None:
            return None
        if not hmac.compare_digest(password.encode(), expected.encode()):
            return None
        return user

    def _cgi(self, user: str, body: bytes, record: Request) -> None:
        path, _, query = self.path.partition("?")
        env = backend_env(os.environ)
        env.update({
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": self.request_version,
            "SERVER_SOFTWARE": self.server_version,
            "SERVER_NAME": HOST,
            "SERVER_PORT": str(self.server.server_address[1]),
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "AUTH_TYPE": "Basic",
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
        })
        for name, value in self.headers.items():  # Git-Protocol, Content-Encoding, ...
            if name.lower() not in _HIDDEN_HEADERS:
                env["HTTP_" + name.upper().replace("-", "_")] = value
        try:
            proc = subprocess.run(["git", "http-backend"], input=body, capture_output=True,
                                  env=env, cwd=self.server.root, timeout=BACKEND_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired:
            self._plain(504, "git http-backend timed out\n", record)
            return
        record.backend_stderr = proc.stderr.decode("utf-8", "replace")
        try:
            status, reason, headers, payload = parse_cgi(proc.stdout)
        except ValueError as exc:
            self._plain(502, f"git http-backend (exit {proc.returncode}) answered badly: {exc}\n"
                             f"{record.backend_stderr}", record)
            return
        self._send(status, reason, headers, payload, record)

    # -- answers ------------------------------------------------------------------------

    def _plain(self, status: int, text: str, record: Request,
               headers: list[tuple[str, str]] | None = None) -> None:
        self._send(status, None, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])],
                   text.encode(), record)

    def _send(self, status: int, reason: str | None, headers: list[tuple[str, str]],
              payload: bytes, record: Request) -> None:
        record.status = status
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()


def parse_cgi(output: bytes) -> tuple[int, str | None, list[tuple[str, str]], bytes]:
    """A CGI response: headers up to a blank line (``Status:`` gives the status), then the body."""
    headers: list[tuple[str, str]] = []
    status, reason = 200, None
    pos = 0
    while True:
        end = output.find(b"\n", pos)
        if end < 0:
            raise ValueError("no blank line ends the headers")
        line = output[pos:end].rstrip(b"\r").decode("latin-1")
        pos = end + 1
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"not a header line: {line[:80]!r}")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            code, _, text = value.partition(" ")
            if not code.isdigit():
                raise ValueError(f"bad Status {value!r}")
            status, reason = int(code), text.strip() or None
        else:
            headers.append((name, value))
    return status, reason, headers, output[pos:]


class GitHTTPServer(ThreadingHTTPServer):
    """Serves the bare repositories under ``root`` to the ``users`` {name: password}."""

    daemon_threads = False  # server_close() waits for the requests being handled
    block_on_close = True

    def __init__(self, root: Path, users: Mapping[str, str],
                 requests: list[Request] | None = None) -> None:
        self.root = Path(root).resolve()
        self.users = dict(users)
        self.requests = requests
        super().__init__((HOST, 0), _Handler)
        if self.server_address[0] != HOST:  # pragma: no cover - bind() keeps the address
            raise RuntimeError(f"bound {self.server_address[0]!r}, not {HOST}")

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host name up; the address is all we need.
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


@contextlib.contextmanager
def serve(root: Path, users: dict[str, str],
          requests: list[Request] | None = None) -> Iterator[str]:
    """Serve ``root``'s bare repositories in a background thread; yields the base URL."""
    server = GitHTTPServer(root, users, requests)
    thread = threading.Thread(target=server.serve_forever, name="httpgit", daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def with_credentials(base: str, user: str, password: str) -> str:
    """``http://user:password@host:port`` from a base URL, both parts quoted."""
    parts = urllib.parse.urlsplit(base)
    host: str = parts.hostname or HOST
    netloc = (f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
              f"@{host}:{parts.port}")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


__all__ = ["GitHTTPServer", "Request", "backend_env", "parse_cgi", "serve", "with_credentials"]
