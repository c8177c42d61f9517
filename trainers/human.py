"""``--feedback human``: a person labels each sampled round on the labeling page, then the loop trains on it.

One round of ``harness train --method d3po --feedback human``:

1. the loop samples the round as usual and :meth:`HumanFeedback.record_round` saves it (images, prompts and
   trajectories) to ``OUT/rounds/rNNNNN`` (``trainers/rounds.py``'s layout), renamed into place whole;
2. the page (``harness.labeling``) is served from the training process at ``http://127.0.0.1:PORT/?token=...``, and
   follows the run from round to round; with ``serve=false`` the loop serves nothing and expects a page a person
   started (``harness label serve OUT``) or labels coming from elsewhere;
3. :meth:`HumanFeedback.evaluate` polls the round's SQLite store every ``poll`` seconds until every prompt has a
   judgment (or a skip) from ``annotators`` people, or the round is closed (the page's "finish round" button or
   ``harness label close ROUND``), or ``timeout`` seconds pass: then ``on_timeout=stop`` ends the run with a
   one-line message (resume later) and ``on_timeout=train`` trains on the labels there are;
4. the labels become pairwise preferences (majority over judgments, ``harness.labeling.scores``), the round's
   labels are exported beside it (``rounds/rNNNNN/export/``), and the method trains on them.

Stop and resume across days: the run's state is saved after every trained round (``save_every``), and a round that
was sampled but not yet labelled stays in ``rounds/``; ``--resume`` finds it (:meth:`recorded_round`) and trains on
that saved round instead of sampling it again, so the labels given in the meantime apply to the very images they
judge. Resume with the same ``--feedback`` string (it is part of the run's identity).

Parameters (``--feedback 'human?KEY=VALUE&...'``): ``annotators`` (people per prompt, default 1), ``mode`` (best,
best-worst, ranking, flags; default best), ``repeat`` (share of prompts shown twice for self-agreement, default 0.1),
``serve`` (true), ``host`` (127.0.0.1), ``port`` (8765; 0 = any free port), ``token`` (true: a random access token in
the URL), ``timeout`` (seconds; none = wait until labelled), ``on_timeout`` (stop | train), ``poll`` (seconds, 2).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl

from benchmarks.registry import PromptItem
from harness.errors import HarnessError
from harness.labeling.app import MODES, Board, LabelServer, is_loopback, new_token
from harness.labeling.export import export_round, open_store
from harness.labeling.progress import RoundStatus, round_status
from harness.labeling.rounds import LabelRound, read_label_round, round_folder
from harness.labeling.scores import round_pairs
from harness.labeling.store import LabelStore
from harness.store import atomic_write_text
from trainers.base import Feedback, FeedbackBatch, Preference, Trajectories
from trainers.rounds import load_round, save_round

SERVER_FILE = "label_server.json"  # in the run folder: the page's URL (with its token) for scripts and people


class HumanFeedback(Feedback):
    """People labelling each sampled round on the labeling page (module docstring)."""

    kind = "human"

    def __init__(self, spec: str, annotators: int = 1, mode: str = "best", repeat: float = 0.1, serve: bool = True,
                 host: str = "127.0.0.1", port: int = 8765, token: bool = True, timeout: float | None = None,
                 on_timeout: str = "stop", poll: float = 2.0) -> None:
        self.spec, self.annotators, self.mode, self.repeat = spec, annotators, mode, repeat
        self.serve, self.host, self.port, self.token = serve, host, port, token
        self.timeout, self.on_timeout, self.poll = timeout, on_timeout, poll
        self.run_dir: Path | None = None
        self.folder: Path | None = None  # the round being labelled / trained on
        self.round_number = 0
        self.server: LabelServer | None = None
        self.announce = lambda text: print(text, file=sys.stderr, flush=True)

    # --- hooks the training loop calls (trainers/loop.py) ---------------------------------------------------------

    def attach(self, out: Path, num_processes: int) -> None:
        """Bind to the run folder; the labels of one round are one person's view of all of it, so one process."""
        if num_processes > 1:
            raise HarnessError("--feedback human runs on one process (the page labels whole rounds); launch "
                               "`harness train` without accelerate/torchrun")
        self.run_dir = Path(out)

    def recorded_round(self, round_index: int) -> tuple[Trajectories, list[PromptItem]] | None:
        """The saved round ``round_index`` (0-based) when an earlier, interrupted run sampled it; else None."""
        folder = round_folder(self._run(), round_index + 1)
        if not folder.is_dir():
            return None
        self.folder, self.round_number = folder, round_index + 1
        self.announce(f"round {round_index + 1}: using the round sampled earlier, {folder}")
        return load_round(folder)

    def record_round(self, round_index: int, trajectories: Trajectories, items: list[PromptItem]) -> None:
        """Save the freshly sampled round where the page finds it."""
        folder = round_folder(self._run(), round_index + 1)
        save_round(folder, trajectories, items)
        self.folder, self.round_number = folder, round_index + 1

    def close(self) -> None:
        """Stop the page server (the loop calls this when training ends or stops)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    # --- Feedback -------------------------------------------------------------------------------------------------

    def evaluate(self, images: list, items: list[PromptItem], groups: list[int],
                 seeds: list[int] | None = None) -> FeedbackBatch:
        """Wait until the current round is labelled, then its preferences between the batch's rows (the batch is
        the whole saved round, in its row order). ``labels_used`` counts judgments (a person's submissions, skips
        included), the cost a person paid, not the pairs derived from them."""
        if self.folder is None:
            raise HarnessError("--feedback human judges rounds the training loop saved; it cannot score other images")
        label_round = read_label_round(self.folder)
        if len(images) != label_round.n_images or len(set(groups)) != len(label_round.groups):
            raise HarnessError(f"{self.folder}: the batch ({len(images)} images) is not the saved round "
                               f"({label_round.n_images} images); start a new --out")
        self._ensure_server()
        store = open_store(label_round)
        status = self._wait(label_round, store)
        judgments = store.judgments()
        prefs = [Preference(a, b, w) for a, b, w in round_pairs(label_round, judgments)]
        summary = export_round(self.folder, annotators=self.annotators)
        self.announce(f"round {self.round_number}: {status.labelled}/{status.prompts} prompts labelled, "
                      f"{len(judgments)} judgments, {sum(p.winner != 0 for p in prefs)} strict pairs; training")
        details = {"round": str(self.folder), "judgments": len(judgments), "closed": status.closed,
                   "annotators": summary["annotators"], "skips": summary["skips"],
                   "distorted_flags": summary["distorted_flags"], "unsafe_flags": summary["unsafe_flags"]}
        return FeedbackBatch(rewards=None, preferences=prefs, labels_used=len(judgments), details=details)

    def scorer_id(self) -> dict:
        return {"feedback": self.spec, "labels": "human (harness.labeling page)"}

    # --- internals ------------------------------------------------------------------------------------------------

    def _run(self) -> Path:
        if self.run_dir is None:
            raise HarnessError("--feedback human needs the training run folder; it is used by `harness train`")
        return self.run_dir

    def _ensure_server(self) -> None:
        if not self.serve or self.server is not None:
            return
        board = Board(self._run(), mode=self.mode, repeat=self.repeat, annotators=self.annotators,
                      token=new_token() if self.token else None)
        self.server = LabelServer(board, self.host, self.port)
        path = self._run() / SERVER_FILE
        atomic_write_text(path, json.dumps({"url": self.server.url, "pid": os.getpid(), "host": self.host,
                                            "port": self.server.port}) + "\n")
        path.chmod(0o600)  # it holds the access token
        warning = "" if is_loopback(self.host) else f" (listening on {self.host}: reachable from other machines)"
        self.announce(f"label the rounds at {self.server.url}{warning}")

    def _wait(self, label_round: LabelRound, store: LabelStore) -> RoundStatus:
        started, last = time.monotonic(), None
        while True:
            status = round_status(label_round, store.judgments(), self.annotators, store.closed() is not None)
            if status.complete:
                return status
            if (status.labelled, status.judgments) != last:
                last = (status.labelled, status.judgments)
                where = self.server.url if self.server is not None else f"`harness label serve {self._run()}`"
                self.announce(f"round {self.round_number}: waiting for labels, {status.labelled}/{status.prompts} "
                              f"prompts done ({where})")
            if self.timeout is not None and time.monotonic() - started > self.timeout:
                if self.on_timeout == "train":
                    return status
                raise HarnessError(f"round {self.round_number} is not labelled after {self.timeout:g}s "
                                   f"({status.labelled}/{status.prompts} prompts); the sampled round and its labels "
                                   f"are kept in {self.folder}: label it, then rerun with --resume")
            time.sleep(self.poll)


def parse_human(spec: str) -> HumanFeedback:
    """``human`` or ``human?KEY=VALUE&...`` (module docstring); unknown keys and bad values are one-line errors."""
    head, _, query = spec.partition("?")
    if head != "human":
        raise HarnessError(f"--feedback {spec!r}: expected human or human?KEY=VALUE&...")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise HarnessError(f"--feedback {spec!r}: malformed parameters {query!r}; write KEY=VALUE&KEY=VALUE") from None
    known = {"annotators": int, "mode": str, "repeat": float, "serve": _bool, "host": str, "port": int,
             "token": _bool, "timeout": _optional_float, "on_timeout": str, "poll": float}
    values: dict[str, object] = {}
    for key, raw in pairs:
        if key not in known:
            raise HarnessError(f"--feedback {spec!r}: unknown parameter {key!r}; known: {', '.join(known)}")
        if key in values:
            raise HarnessError(f"--feedback {spec!r}: {key} is given twice")
        try:
            values[key] = known[key](raw)
        except ValueError:
            raise HarnessError(f"--feedback {spec!r}: {key}={raw!r} is not a valid {key}") from None
    problems = []
    if values.get("annotators", 1) < 1:
        problems.append("annotators must be >= 1")
    if values.get("mode", "best") not in MODES:
        problems.append(f"mode must be one of {', '.join(MODES)}")
    if not 0 <= values.get("repeat", 0.1) <= 1:
        problems.append("repeat must be a share in [0, 1]")
    if not 0 <= values.get("port", 8765) < 65536:
        problems.append("port must be in 0..65535")
    if values.get("timeout") is not None and not values["timeout"] > 0:
        problems.append("timeout must be > 0 seconds (or none)")
    if values.get("on_timeout", "stop") not in ("stop", "train"):
        problems.append("on_timeout must be stop or train")
    if not values.get("poll", 2.0) > 0:
        problems.append("poll must be > 0 seconds")
    if problems:
        raise HarnessError(f"--feedback {spec!r}: {'; '.join(problems)}")
    return HumanFeedback(spec, **values)


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(text)
    return text.lower() in ("true", "1", "yes")


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "") else float(text)
