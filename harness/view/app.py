"""The viewer's web app: the labeling page's stack (Starlette under uvicorn, 127.0.0.1 unless told otherwise, a
random access token, a Host check against DNS rebinding), serving a :class:`~harness.view.gallery.Gallery`.

Routes (every one needs the token, as ``?token=``, the ``X-Harness-Token`` header, or the cookie the first
authorised page view sets, so that the leaderboard's plain links reach the gallery without carrying the token):

* ``GET /`` (also ``/view``): the gallery page (vanilla JS from ``static/``, inlined; no CDN). Its query selects what
  to show: ``source=ID`` (repeatable; ``record=`` and ``run=`` are the same), ``tag=TAG``, ``failing=1``, ``q=TEXT``;
* ``GET /api/gallery``: the evaluations and per-prompt verdicts (:meth:`Gallery.to_json`);
* ``GET /img/<source>/<prompt index>/<image index>``: one image, looked up in the gallery's table of images (the
  request never names a path, so no traversal can reach another file);
* ``GET /leaderboard.html`` and ``GET /plots/<name>.svg``: the results folder's leaderboard page and its plots,
  when ``--results`` was given; its score cells link to ``view?record=ID&tag=TAG``.

The cookie is ``HttpOnly`` and ``SameSite=Strict``: another site cannot make the browser send it, and page scripts
cannot read it; its name carries a hash of the token, so viewers on other ports do not overwrite each other's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from hmac import compare_digest
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from harness.labeling.app import LOOPBACK, BackgroundServer, inline_page, is_loopback, new_token
from harness.view.gallery import Gallery

STATIC = Path(__file__).parent / "static"
IMAGE = re.compile(r"^([A-Za-z0-9_.-]{1,200})/(\d{1,9})/(\d{1,6})$")
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
                                           "script-src 'self' 'unsafe-inline'; connect-src 'self'"}
Handler = Callable[[Request], Awaitable[Response]]


def cookie_name(token: str) -> str:
    return "harness_view_" + hashlib.sha256(token.encode()).hexdigest()[:12]


def create_app(gallery: Gallery, token: str | None, allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette app serving ``gallery``; ``token`` None serves without one (``--no-token``)."""
    data = gallery.to_json()

    def authorised(request: Request) -> tuple[bool, bool]:
        """(allowed, the token came in the query: set the cookie)."""
        if token is None:
            return True, False
        query = request.query_params.get("token")
        given = request.headers.get("x-harness-token") or query or request.cookies.get(cookie_name(token)) or ""
        return compare_digest(given.encode(), token.encode()), bool(query)

    def guard(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            allowed, from_query = authorised(request)
            if not allowed:
                return JSONResponse({"error": "missing or wrong access token; open the URL the viewer printed"},
                                    status_code=403)
            response = await handler(request)
            if from_query and token is not None:
                response.set_cookie(cookie_name(token), token, httponly=True, samesite="strict", path="/")
            return response
        return wrapped

    @guard
    async def page(request: Request) -> Response:
        return HTMLResponse(inline_page(STATIC, "view"), headers=PAGE_HEADERS)

    @guard
    async def gallery_json(request: Request) -> Response:
        return JSONResponse(data, headers={"Cache-Control": "no-store"})

    @guard
    async def image(request: Request) -> Response:
        match = IMAGE.match(request.path_params["rest"])
        path = None if match is None else gallery.image(match[1], int(match[2]), int(match[3]))
        if path is None or not path.is_file():
            return JSONResponse({"error": "not an image of the evaluations shown"}, status_code=404)
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600",
                                                                   "X-Content-Type-Options": "nosniff"})

    @guard
    async def leaderboard(request: Request) -> Response:
        path = gallery.leaderboard()
        if path is None:
            return JSONResponse({"error": "no leaderboard: start the viewer with --results DIR"}, status_code=404)
        return HTMLResponse(path.read_text(), headers=PAGE_HEADERS)

    @guard
    async def plot(request: Request) -> Response:
        path = gallery.plots.get(request.path_params["name"])
        if path is None or not path.is_file():
            return JSONResponse({"error": "not a plot of the leaderboard"}, status_code=404)
        return FileResponse(path, media_type="image/svg+xml", headers={"X-Content-Type-Options": "nosniff",
                                                                       "Content-Security-Policy": "default-src 'none'"})

    routes = [Route("/", page, methods=["GET"]), Route("/view", page, methods=["GET"]),
              Route("/api/gallery", gallery_json, methods=["GET"]),
              Route("/img/{rest:path}", image, methods=["GET"]),
              Route("/leaderboard.html", leaderboard, methods=["GET"]),
              Route("/plots/{name:path}", plot, methods=["GET"])]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


class ViewServer(BackgroundServer):
    """uvicorn serving a gallery on a background thread; ``url`` is what a person opens, ``wait()`` blocks until
    Ctrl-C (what ``harness view`` does). ``port=0`` takes a free port."""

    def __init__(self, gallery: Gallery, host: str = "127.0.0.1", port: int = 8766, token: bool | str = True) -> None:
        self.gallery = gallery
        token_value = (new_token() if token is True else token) or None
        hosts = list(LOOPBACK) if is_loopback(host) else None
        super().__init__(create_app(gallery, token_value, hosts), host, port, token_value, "the viewer",
                         "pass another --port")
