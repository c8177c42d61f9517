"""Human labels for sampled rounds (issue 15): a local web page, a SQLite store that loses nothing, exports to the
label formats the trainers read, and agreement statistics.

* :mod:`harness.labeling.rounds`: what a round folder shows a person (prompts, their k images), read without the
  trainers (``harness`` never imports ``trainers``);
* :mod:`harness.labeling.store`: the labels, one SQLite transaction per submitted judgment (WAL mode);
* :mod:`harness.labeling.scores`: a judgment's per-image scores and the round's pairwise preferences;
* :mod:`harness.labeling.agreement`: Cohen's and Fleiss' kappa;
* :mod:`harness.labeling.export`: JSONL (pairs, best-of-k, rankings, flags) and the official D3PO layout;
* :mod:`harness.labeling.app`: the Starlette app and its uvicorn server (``harness label serve``).
"""
