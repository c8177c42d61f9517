"""Run by tests/test_train_ddp.py, on one process or under torchrun: a small training run into OUT.

Usage: ddp_train.py CKPT OUT METHOD FEEDBACK BUDGET [KEY=VALUE ...]
"""

import os
import sys

import torch

from trainers.loop import train

torch.set_num_threads(1)
ckpt, out, method, feedback, budget, *pairs = sys.argv[1:]
settings = dict(pair.split("=", 1) for pair in pairs)
result = train(method, ckpt, feedback, "builtin:geneval-train", int(budget), out, seed=5, settings=settings,
               progress=False)
if os.environ.get("RANK", "0") == "0":  # one line, not two processes' prints interleaved
    print("rounds", result.summary["rounds"], "processes", result.summary["cost"]["processes"])
