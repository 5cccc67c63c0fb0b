"""The spot-the-fake page, served by the standard library on 127.0.0.1 only.

GET /, /page.js, /page.css: the page. POST /api/start: the token and image ids (once). GET /img/<id>.png: one
drawing. POST /api/answer {"token", "id", "answer"}: the truth for practice, the results after the last scored
one. Any bad request gets a 4xx, one console line, and changes nothing."""
from __future__ import annotations

import errno
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional, Tuple
from urllib.parse import unquote, urlsplit

from fruitgan.people.session import Refused, Session
from fruitgan.util.settings import PORT_MAX
from fruitgan.util.user_io import UserError

HOST = "127.0.0.1"
PORT_TRIES = 50                 # a port in use moves on to the next, this many times
MAX_BODY = 1024                 # an answer is a few dozen bytes
REQUEST_TIMEOUT_S = 30          # a connection that sends nothing is dropped after this
WAIT_STEP_S = 0.2               # the main thread checks this often whether the test has ended (and sees Ctrl+C)
PAGE = Path(__file__).resolve().parent
STATIC = {"/": ("page.html", "text/html; charset=utf-8"), "/page.js": ("page.js", "text/javascript; charset=utf-8"),
          "/page.css": ("page.css", "text/css; charset=utf-8")}
IMAGE_PATH = re.compile(r"/img/([0-9a-f]{1,32})\.png")


class TestApp:
    """What the handlers share: the session, its token once started, and how the test ends."""

    def __init__(self, session: Session, about: str, finish: Callable[[Session], dict], log: Callable[[str], None]):
        self.session, self.about, self.finish, self.log = session, about, finish, log
        self.lock, self.done = threading.Lock(), threading.Event()      # one answer at a time; the test is over
        self.token: Optional[str] = None
        self.results: Optional[dict] = None
        self.error: Optional[BaseException] = None                       # finish failed: the script stops with it
        self.files = {path: ((PAGE / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}

    def start(self) -> dict:
        with self.lock:
            if self.token is not None:
                raise Refused(409, "the test has already started in another page; finish it there")
            self.token = secrets.token_hex(16)
            ids = lambda practice: [s.id for s in self.session.round(practice)]
            return {"token": self.token, "about": self.about, "practice": ids(True), "scored": ids(False)}

    def image(self, image_id: str) -> bytes:
        with self.lock:
            shown = self.session.image(image_id)
            shown.served = True
            return shown.png

    def answer(self, body: dict) -> dict:
        with self.lock:
            token = body.get("token")
            if self.token is None or not isinstance(token, str) or not secrets.compare_digest(token, self.token):
                raise Refused(403, "the answer carries another session's token")
            if self.results is not None:
                raise Refused(409, "the test is over")
            shown = self.session.answer(body.get("id"), body.get("answer"))
            if shown.practice:
                return {"truth": shown.truth}
            if not self.session.finished():
                return {}
            try:
                self.results = self.finish(self.session)
            except Exception as exc:       # e.g. a full disk: the page says so
                self.error = exc
                raise Refused(500, f"the session could not be kept: {exc}") from None
            return {"results": self.results}


class Handler(BaseHTTPRequestHandler):
    server_version = "spot-the-fake"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format, *args):   # answered requests are quiet; refusals print their own line
        pass

    def log_error(self, format, *args):     # the base class's own refusals (a malformed request line, ...)
        self.server.app.log(f"refused {self.address_string()}: " + format % args)

    def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        for name, value in (("Content-Type", kind), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _path(self) -> str:
        path = urlsplit(self.path).path
        if ".." in unquote(path).replace("\\", "/").split("/"):
            raise Refused(400, "the path leaves the page's own")
        return path

    def _body(self) -> dict:
        try:
            size = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refused(411, "no body length given") from None
        if not 0 <= size <= MAX_BODY:
            raise Refused(413, f"a body of {size} bytes (at most {MAX_BODY})")
        try:
            body = json.loads(self.rfile.read(size))
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Refused(400, "the body is not a JSON object")
        return body

    def _route(self, app: TestApp) -> Tuple[bytes, str]:
        path = self._path()
        if self.command == "GET" and path in app.files:
            return app.files[path]
        match = IMAGE_PATH.fullmatch(path)
        if self.command == "GET" and match:
            return app.image(match.group(1)), "image/png"
        if self.command == "POST" and path in ("/api/start", "/api/answer"):
            body = self._body()
            return json.dumps(app.start() if path == "/api/start" else app.answer(body)).encode(), "application/json"
        raise Refused(404, "no such page")

    def _handle(self) -> None:
        app = self.server.app
        try:
            self._send(200, *self._route(app))
        except Refused as refused:
            app.log(f"refused {self.command} {self.path[:80]!r}: {refused.code} {refused}")
            self.close_connection = True
            self._send(refused.code, json.dumps({"error": str(refused)}).encode())
        if app.results is not None or app.error is not None:
            self.wfile.flush()
            app.done.set()

    do_GET = do_POST = _handle


def bind(first_port: int) -> ThreadingHTTPServer:
    """The server on 127.0.0.1 at ``first_port`` or, when that is in use, the next free port after it."""
    for port in range(first_port, min(first_port + PORT_TRIES, PORT_MAX + 1)):
        try:
            server = ThreadingHTTPServer((HOST, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise UserError(f"cannot serve the page on {HOST}:{port}: {exc.strerror or exc}") from None
        server.daemon_threads = True
        return server
    raise UserError(f"ports {first_port} to {first_port + PORT_TRIES - 1} are all in use; give another with --port")


def serve(app: TestApp, first_port: int, announce: Callable[[str], None]) -> dict:
    """Serve the page until the scored round is over (its results) or Ctrl+C; the server stops either way."""
    server = bind(first_port)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": WAIT_STEP_S}, daemon=True)
    thread.start()
    try:
        announce(f"http://{HOST}:{server.server_address[1]}/")
        while not app.done.wait(WAIT_STEP_S):
            pass
    finally:
        server.shutdown()
        server.server_close()
    if app.error is not None:
        raise app.error
    return app.results
