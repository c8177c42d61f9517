"""``harness view RUN_DIR...``: a local web page of per-prompt image galleries (issue 16, item 6).

* :mod:`harness.view.gallery`: what is shown: run folders and published records with their per-image verdicts and
  reasons, and the image file of each verdict where one exists (published records through the image store's
  content keys);
* :mod:`harness.view.app`: the Starlette app and its uvicorn server, the labeling page's stack (loopback, token);
* ``static/``: the page (vanilla JS, inlined): several evaluations side by side for the same prompt and seed,
  filters by tag, by "failing only" and by prompt text; the leaderboard's score cells link here.
"""

from __future__ import annotations

from pathlib import Path

from harness.labeling.app import is_loopback
from harness.view.app import ViewServer
from harness.view.gallery import Gallery, load_gallery

__all__ = ["Gallery", "ViewServer", "load_gallery", "serve"]


def serve(paths: list[Path | str] | tuple[Path | str, ...] = (), results: Path | str | None = None,
          stores: list[Path | str] | tuple[Path | str, ...] = (), host: str = "127.0.0.1", port: int = 8766,
          token: bool | str = True, announce: object = None) -> ViewServer:
    """Load the evaluations and start the viewer on a background thread; returns the running server (``.url``,
    ``.wait()``, ``.stop()``). ``announce`` (e.g. ``print``) gets a warning when the page is reachable from other
    machines."""
    gallery = load_gallery(list(paths), results=results, stores=list(stores))
    if not is_loopback(host) and callable(announce):
        announce(f"warning: listening on {host}, reachable from other machines"
                 + ("" if token else " WITHOUT an access token"))
    return ViewServer(gallery, host=host, port=port, token=token)
