"""The dashboard's web server: a read-only view of one store, served by the standard library's
threaded HTTP server (a handful of routes needs no framework).

Read-only by construction: the store is opened with `never_writes` (SQLite read-only, PostgreSQL
read-only transactions), the server answers GET and HEAD only, and it runs no user code (a study's
own workload is never imported: everything shown comes from the store). Bound to 127.0.0.1 unless
told otherwise; there, requests naming another host are refused, so a web page elsewhere cannot
reach it through DNS rebinding. Every page forbids inline scripts (Content-Security-Policy).
"""

from __future__ import annotations

import dataclasses
import http.server
import importlib.resources
import json
import threading
import traceback
import urllib.parse

from jaxplay import store as store_lib
from jaxplay.analysis import html_report, tables
from jaxplay.analysis import study as study_lib
from jaxplay.dashboard import data, pages
from jaxplay.errors import StoreError

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass
class _View:
    """A study as last read: reread only when the store's version token changes."""

    version: str
    study: study_lib.StudyData
    payload: dict
    sections: list


class Dashboard(http.server.ThreadingHTTPServer):
    """Serves the pages of one store until shut down; `url` is any store URL."""

    daemon_threads = True  # a browser's open connections do not keep the process alive

    def __init__(self, url: str, host: str = "127.0.0.1", port: int = 6007):
        self.store = store_lib.Store(url, never_writes=True)
        self.store_text = store_lib.redact(url)
        self.loopback = host in LOOPBACK
        self._views: dict[str, _View] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        try:
            super().__init__((host, port), _Handler)
        except BaseException:
            self.store.close()
            raise
        # The latest studies are read before anyone asks: the first page a browser opens is drawn
        # from a warm cache (a 500-trial study takes a few tenths of a second to read).
        threading.Thread(target=self._read_ahead, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.store.close()

    def _read_ahead(self, studies: int = 3) -> None:
        try:
            latest = sorted(self.store.overview(), key=lambda s: s["updated_at"] or "")
            for row in reversed(latest[-studies:]):
                self.view(row["name"])
        except Exception:  # a store closed meanwhile, or a study that cannot be read: the
            pass  # request for it says why

    def view(self, name: str) -> _View:
        """The study `name`, reread from the store if it changed since the last request."""
        study_id = self.store.study_id(name)
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # one reader per study: simultaneous requests share its result
            version = self.store.version(study_id)
            cached = self._views.get(name)
            if cached is not None and cached.version == version:
                return cached
            study = study_lib.read(self.store, study_id)
            view = _View(version, study, data.payload(study), html_report.sections(study))
            self._views[name] = view
            return view


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Dashboard
    server_version = "jaxplay-dashboard"

    def log_message(self, format, *args):
        pass  # one line per request would drown the URL the command printed

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _refuse(self):
        self._send(405, "text/plain", b"read-only: GET only\n", head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _serve(self, head: bool) -> None:
        try:
            if self.server.loopback and not self._local_host():
                self._page(403, pages.error(403, "this dashboard answers on localhost only"), head)
                return
            self._route(head)
        except StoreError as e:
            self._page(404, pages.error(404, str(e)), head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away
        except Exception as e:  # one broken page must not stop the server
            traceback.print_exc()
            self._page(500, pages.error(500, f"{type(e).__name__}: {e}"), head)

    def _local_host(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in LOOPBACK

    def _route(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        query = urllib.parse.parse_qs(url.query)
        dashboard = self.server
        if url.path == "/":
            self._page(200, pages.home(dashboard.store_text, dashboard.store.overview()), head)
        elif url.path == "/fragment/home":
            self._page(200, pages.home_fragment(dashboard.store.overview()), head)
        elif len(parts) == 2 and parts[0] == "study":
            view = dashboard.view(parts[1])
            self._page(
                200, pages.study(view.study, view.payload, view.sections, view.version), head
            )
        elif len(parts) == 3 and parts[:2] == ["api", "study"]:
            view = dashboard.view(parts[2])
            body = {"version": view.version, "payload": view.payload,
                    "parts": pages.parts(view.sections)}  # fmt: skip
            self._json(body, head)
        elif len(parts) == 4 and parts[:2] == ["api", "study"] and parts[3] == "version":
            self._json({"version": dashboard.store.version(dashboard.store.study_id(parts[2]))},
                       head)  # fmt: skip
        elif url.path == "/compare":
            names = [query.get(k, [None])[0] for k in ("a", "b")]
            if None in names:
                self._page(400, pages.error(400, "name two studies: /compare?a=NAME&b=NAME"), head)
                return
            a, b = (dashboard.view(n).study for n in names)
            curves = {"studies": [pages.best_so_far(a), pages.best_so_far(b)]}
            self._page(200, pages.compare(a, b, tables.compare(a, b), curves), head)
        elif len(parts) == 2 and parts[0] == "static":
            self._static(parts[1], head)
        else:
            self._page(404, pages.error(404, f"no page at {url.path}"), head)

    def _static(self, name: str, head: bool) -> None:
        if name == "plotly.min.js":
            # Plotly's own bundle, from the installed plotly package: nothing comes from a CDN.
            body = _plotly_js()
            kind = "text/javascript; charset=utf-8"
        elif name == "dashboard.js":
            body = (importlib.resources.files("jaxplay.dashboard") / name).read_bytes()
            kind = "text/javascript; charset=utf-8"
        elif name == "dashboard.css":  # the report's style sheet and the dashboard's additions
            body = (html_report.STYLE + pages.STYLE).encode()
            kind = "text/css; charset=utf-8"
        else:
            self._page(404, pages.error(404, f"no file {name}"), head)
            return
        self._send(200, kind, body, head, cache=True)

    def _page(self, status: int, text: str, head: bool) -> None:
        self._send(status, "text/html; charset=utf-8", text.encode(), head)

    def _json(self, value, head: bool) -> None:
        body = json.dumps(value, allow_nan=False).encode()
        self._send(200, "application/json", body, head)

    def _send(self, status: int, kind: str, body: bytes, head: bool, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)


_PLOTLY: list[bytes] = []


def _plotly_js() -> bytes:
    if not _PLOTLY:
        from plotly.offline import get_plotlyjs

        _PLOTLY.append(get_plotlyjs().encode())
    return _PLOTLY[0]
