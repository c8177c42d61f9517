"""The labeling page: a Starlette app under uvicorn, bound to 127.0.0.1 unless told otherwise.

Routes (every one needs the access token, as ``?token=`` or the ``X-Harness-Token`` header, unless the server was
started without one):

* ``GET /``: the page (plain HTML and vanilla JS from ``static/``, inlined: no build step, no CDN, works offline);
* ``GET /api/state?annotator=ID``: the annotator's next prompt (its images in display order), progress n of N;
* ``GET /img/images/00003.png``: an image of the current round, looked up by its exact name among the round's
  images, so ``..``, encoded traversal, absolute paths and any other file of the folder are 404;
* ``POST /api/label``: one judgment (JSON, at most ``MAX_BODY`` bytes), committed in one SQLite transaction before
  the reply; returns the next state;
* ``POST /api/undo``: marks the annotator's latest judgment undone; returns the state (that prompt again);
* ``POST /api/close``: marks the round done (a waiting training loop goes on with the labels there are);
* ``GET /api/status``: the round's progress for scripts and the training loop.

POST bodies must be ``application/json``: a cross-site HTML form cannot send that without a CORS preflight, which
this app never answers, and the token is needed anyway. The target is a round folder or a training run folder; for a
run the page follows its newest round (``rounds/rNNNNN``), and a judgment names its round so that a page left open
across a round change cannot label the wrong one.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from hmac import compare_digest
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from harness.errors import DataError, HarnessError
from harness.labeling.export import open_store
from harness.labeling.progress import display_order, queue, round_status
from harness.labeling.rounds import LabelRound, is_round_folder, latest_round, read_label_round
from harness.labeling.store import LabelConflict, LabelStore

MODES = ("best", "best-worst", "ranking", "flags")
MAX_BODY = 16 * 1024
ANNOTATOR = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
STATIC = Path(__file__).parent / "static"
Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Board:
    """What the app serves: a round folder, or the newest round of a training run folder."""

    target: Path
    mode: str = "best"
    repeat: float = 0.1
    annotators: int = 1
    token: str | None = None
    _cache: dict[Path, tuple[LabelRound, LabelStore]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.target = Path(target_folder(self.target))
        if self.mode not in MODES:
            raise HarnessError(f"unknown labeling mode {self.mode!r}; use one of {', '.join(MODES)}")
        if not 0 <= self.repeat <= 1:
            raise HarnessError(f"repeat must be a share of prompts in [0, 1], got {self.repeat}")
        if self.annotators < 1:
            raise HarnessError(f"annotators must be >= 1, got {self.annotators}")

    def current(self) -> tuple[LabelRound, LabelStore] | None:
        """The round being labelled now (None while a run folder has no round yet)."""
        folder = self.target if is_round_folder(self.target) else latest_round(self.target)
        if folder is None:
            return None
        with self._lock:
            if folder not in self._cache:
                label_round = read_label_round(folder)
                self._cache[folder] = (label_round, open_store(label_round))
            return self._cache[folder]


def target_folder(target: Path) -> Path:
    """Check that ``target`` is a round folder or a training run folder (one-line error otherwise)."""
    target = Path(target)
    if not target.is_dir():
        raise HarnessError(f"{target} is not a folder; pass a sampled round folder or a training run folder")
    if not is_round_folder(target) and not (target / "rounds").is_dir() and not (target / "run.json").is_file():
        raise HarnessError(f"{target} is neither a round folder (round.json or prompt.json) nor a training run "
                           "folder (run.json, rounds/)")
    return target


# --- state ------------------------------------------------------------------------------------------------------


def _state(board: Board, annotator: str, token_query: str) -> dict:
    current = board.current()
    if current is None:
        return {"round": None, "mode": board.mode, "annotator": annotator, "item": None,
                "progress": {"done": 0, "total": 0}, "message": "waiting for the training run to sample a round"}
    label_round, store = current
    judgments = store.judgments()
    mine = {(j.group, j.showing) for j in judgments if j.annotator == annotator}
    order = queue(label_round, board.repeat)
    todo = [entry for entry in order if entry not in mine]
    item = None
    if todo:
        group_index, showing = todo[0]
        group = label_round.groups[group_index]
        shown = display_order(label_round, annotator, group_index, showing)
        item = {"group": group_index, "showing": showing, "prompt": group.prompt,
                "images": [{"name": group.images[p], "url": f"img/{group.images[p]}{token_query}"} for p in shown]}
    status = round_status(label_round, judgments, board.annotators, store.closed() is not None)
    mine_live = [j for j in judgments if j.annotator == annotator]
    return {"round": label_round.folder.name, "mode": board.mode, "annotator": annotator, "item": item,
            "k": max(len(g.rows) for g in label_round.groups),
            "progress": {"done": len(order) - len(todo), "total": len(order)},
            "can_undo": bool(mine_live), "round_status": status.to_dict()}


def _positions(names: object, group_images: tuple[str, ...], what: str) -> list[int]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest(400, f"'{what}' must be a list of image names")
    out = []
    for name in names:
        if name not in group_images:
            raise BadRequest(400, f"'{what}': image {name!r} is not an image of this prompt in the round")
        out.append(group_images.index(name))
    if len(set(out)) != len(out):
        raise BadRequest(400, f"'{what}' names an image twice")
    return out


def _one(name: object, group_images: tuple[str, ...], what: str) -> int | None:
    if name is None:
        return None
    if not isinstance(name, str) or name not in group_images:
        raise BadRequest(400, f"'{what}': {name!r} is not an image of this prompt in the round")
    return group_images.index(name)


def _add_label(board: Board, body: dict) -> str:
    """Validate a judgment against the round and commit it; returns the annotator."""
    annotator = _annotator(body.get("annotator"))
    current = board.current()
    if current is None:
        raise BadRequest(409, "no round to label yet")
    label_round, store = current
    if body.get("round") != label_round.folder.name:
        raise BadRequest(409, f"this page shows round {body.get('round')!r} but the current round is "
                              f"{label_round.folder.name!r}; reload the page")
    group_index, showing = body.get("group"), body.get("showing", 0)
    if not isinstance(group_index, int) or isinstance(group_index, bool) or not isinstance(showing, int) or \
            (group_index, showing) not in set(queue(label_round, board.repeat)):
        raise BadRequest(400, f"prompt {group_index!r} / showing {showing!r} is not in this round's queue")
    images = label_round.groups[group_index].images
    action = body.get("action")
    if action not in ("choice", "skip"):
        raise BadRequest(400, "'action' must be 'choice' or 'skip'")
    request_id = body.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or not REQUEST_ID.match(request_id)):
        raise BadRequest(400, "'request_id' must be 1-64 letters, digits, _ or -")
    elapsed = body.get("elapsed_ms")
    if elapsed is not None and (not isinstance(elapsed, int) or isinstance(elapsed, bool) or elapsed < 0):
        raise BadRequest(400, "'elapsed_ms' must be a non-negative integer")
    fields = {"distorted": [], "unsafe": [], "best": None, "worst": None, "ranking": None}
    if action == "choice":
        best, worst = _one(body.get("best"), images, "best"), _one(body.get("worst"), images, "worst")
        ranking = body.get("ranking")
        ranking = None if ranking is None else _positions(ranking, images, "ranking")
        if ranking is not None and len(ranking) != len(images):
            raise BadRequest(400, f"'ranking' must order all {len(images)} images of the prompt")
        if ranking is not None and (best is not None or worst is not None):
            raise BadRequest(400, "give either 'ranking' or 'best' (and 'worst'), not both")
        if worst is not None and (best is None or worst == best):
            raise BadRequest(400, "'worst' needs a different 'best' image")
        if board.mode != "flags" and best is None and ranking is None:
            raise BadRequest(400, "pick the best image (or a ranking), or skip the prompt")
        fields = {"best": best, "worst": worst, "ranking": ranking,
                  "distorted": _positions(body.get("distorted", []), images, "distorted"),
                  "unsafe": _positions(body.get("unsafe", []), images, "unsafe")}
    display = body.get("display")
    display = display_order(label_round, annotator, group_index, showing) if display is None else \
        _positions(display, images, "display")
    try:
        store.add(annotator, group_index, showing, action, display=display, elapsed_ms=elapsed,
                  request_id=request_id, **fields)
    except LabelConflict as err:
        raise BadRequest(409, str(err)) from None
    return annotator


def _annotator(value: object) -> str:
    if not isinstance(value, str) or not ANNOTATOR.match(value):
        raise BadRequest(400, "annotator id must be 1-40 letters, digits, '.', '_' or '-'")
    return value


# --- app --------------------------------------------------------------------------------------------------------


def create_app(board: Board, allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette app serving ``board``; ``allowed_hosts`` (the server passes the loopback names when bound to
    loopback) refuses other Host headers, a guard against DNS rebinding beside the token."""

    def authorised(request: Request) -> bool:
        if board.token is None:
            return True
        given = request.headers.get("x-harness-token") or request.query_params.get("token") or ""
        return compare_digest(given.encode(), board.token.encode())

    def token_query() -> str:
        return "" if board.token is None else f"?token={board.token}"

    def guard(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"error": "missing or wrong access token; open the URL the server printed"},
                                    status_code=403)
            try:
                return await handler(request)
            except BadRequest as err:
                return JSONResponse({"error": str(err)}, status_code=err.status)
            except DataError as err:
                return JSONResponse({"error": str(err)}, status_code=500)
        return wrapped

    async def json_body(request: Request) -> dict:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise BadRequest(415, "send the body as application/json")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            raise BadRequest(413, f"body larger than {MAX_BODY} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise BadRequest(413, f"body larger than {MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest(400, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "body must be a JSON object")
        return body

    @guard
    async def page(request: Request) -> Response:
        return HTMLResponse(inline_page(STATIC, "page"), headers={
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"})

    @guard
    async def state(request: Request) -> Response:
        return JSONResponse(_state(board, _annotator(request.query_params.get("annotator")), token_query()))

    @guard
    async def image(request: Request) -> Response:
        current = board.current()
        path = None if current is None else current[0].image_path(request.path_params["name"])
        if path is None:
            return JSONResponse({"error": "not an image of this round"}, status_code=404)
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @guard
    async def label(request: Request) -> Response:
        annotator = _add_label(board, await json_body(request))
        return JSONResponse(_state(board, annotator, token_query()))

    @guard
    async def undo(request: Request) -> Response:
        annotator = _annotator((await json_body(request)).get("annotator"))
        current = board.current()
        undone = None if current is None else current[1].undo(annotator)
        return JSONResponse({**_state(board, annotator, token_query()),
                             "undone": None if undone is None else undone.to_dict()})

    @guard
    async def close(request: Request) -> Response:
        annotator = _annotator((await json_body(request)).get("annotator"))
        current = board.current()
        if current is None:
            raise BadRequest(409, "no round to close yet")
        current[1].close_round(annotator)
        return JSONResponse(_state(board, annotator, token_query()))

    @guard
    async def status(request: Request) -> Response:
        current = board.current()
        if current is None:
            return JSONResponse({"round": None})
        label_round, store = current
        status = round_status(label_round, store.judgments(), board.annotators, store.closed() is not None)
        return JSONResponse({"round": label_round.folder.name, **status.to_dict()})

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/api/state", state, methods=["GET"]),
        Route("/api/status", status, methods=["GET"]),
        Route("/api/label", label, methods=["POST"]),
        Route("/api/undo", undo, methods=["POST"]),
        Route("/api/close", close, methods=["POST"]),
        Route("/img/{name:path}", image, methods=["GET"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


# --- server -----------------------------------------------------------------------------------------------------


def inline_page(static: Path, name: str) -> str:
    """``static/<name>.html`` with its stylesheet and script inlined at ``/*PAGE_CSS*/`` and ``/*PAGE_JS*/``: one
    self-contained response, so the page needs no further authorised requests and no CDN."""
    html = (static / f"{name}.html").read_text()
    html = html.replace("/*PAGE_CSS*/", (static / f"{name}.css").read_text())
    return html.replace("/*PAGE_JS*/", (static / f"{name}.js").read_text())


def new_token() -> str:
    return secrets.token_urlsafe(18)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class BackgroundServer:
    """uvicorn serving a Starlette app on a background thread, for the labeling page and the viewer: ``url`` is
    what a person opens (with the token, if any), ``wait()`` blocks until Ctrl-C, ``stop()`` shuts it down.
    ``port=0`` takes a free port; a port that cannot be bound is a one-line error naming ``what`` and ``fix``."""

    def __init__(self, app: Starlette, host: str, port: int, token: str | None, what: str, fix: str) -> None:
        import uvicorn

        self.host, self.token = host, token
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=what, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise HarnessError(f"{what} could not listen on {host}:{port} (port in use?); {fix}")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}/" + ("" if self.token is None else f"?token={self.token}")

    def wait(self) -> None:
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stop()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class LabelServer(BackgroundServer):
    """The labeling page of a :class:`Board` on a background thread (the training loop's page)."""

    def __init__(self, board: Board, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.board = board
        hosts = list(LOOPBACK) if is_loopback(host) else None
        super().__init__(create_app(board, hosts), host, port, board.token, "the labeling page",
                         "pass another port (port=N in --feedback human?port=N, or --port)")


def serve_forever(target: Path, host: str = "127.0.0.1", port: int = 8765, token: bool = True, mode: str = "best",
                  repeat: float = 0.1, annotators: int = 1, announce: object = print) -> None:
    """``harness label serve``: serve in the foreground until Ctrl-C."""
    import uvicorn

    board = Board(Path(target), mode=mode, repeat=repeat, annotators=annotators,
                  token=new_token() if token else None)
    board.current()  # a malformed round fails now, with its one-line error
    hosts = list(LOOPBACK) if is_loopback(host) else None
    if not is_loopback(host):
        announce(f"warning: listening on {host}, reachable from other machines"
                 + ("" if token else " WITHOUT an access token"))
    config = uvicorn.Config(create_app(board, hosts), host=host, port=port, log_level="warning", lifespan="off",
                            access_log=False)
    server = uvicorn.Server(config)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    query = "" if board.token is None else f"?token={board.token}"
    announce(f"labeling {board.target} ({mode}): open http://{shown}:{port}/{query}  (Ctrl-C stops; labels are "
             "saved per click)")
    server.run()
