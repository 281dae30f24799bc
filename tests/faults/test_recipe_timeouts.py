"""Defect 9 of issue 23: a hung rank (SIGSTOP, a dead GPU) held the job for the process-group timeout, 1800 s by
default. The recipes launched with `accelerate launch` set --ddp_timeout to what fits them."""

import glob
import os

import pytest
import yaml
from conftest import REPO


DDP_RECIPES = [
    path
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
    if "Run: accelerate launch" in open(path).read()
]


def test_there_are_ddp_recipes():
    assert len(DDP_RECIPES) >= 10


@pytest.mark.parametrize("path", DDP_RECIPES, ids=os.path.basename)
def test_ddp_recipes_set_a_timeout_that_fits_them(path):
    with open(path) as f:
        timeout = yaml.safe_load(f).get("ddp_timeout")
    assert timeout is not None, "no ddp_timeout: a hung rank holds the job 1800 s"
    expected = 600 if "mlm_" in path else 3600 if "as2m_stage1" in path else 900  # codes only / 2M clips / smaller
    assert timeout == expected


_STUCK_STEP = r"""
import logging, sys, time
from types import SimpleNamespace
from audioformer.training.watchdog import StepWatchdog
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
watchdog = StepWatchdog(timeout=1.0, rank=1, poll=0.1)
watchdog.on_step_begin(None, SimpleNamespace(global_step=3), None)
watchdog.on_step_end(None, None, None)  # a step that ends in time is not timed any more
time.sleep(1.5)
watchdog.on_step_begin(None, SimpleNamespace(global_step=4), None)
time.sleep(30)  # stuck in a collective with a hung rank
"""


def test_a_step_stuck_past_the_timeout_ends_the_process():
    """Gloo does not bound DDP's all-reduce: with a rank stopped, the other waited in backward past --ddp_timeout
    (140 s with --ddp_timeout 20). The step watchdog ends it after --ddp_timeout, naming the rank and the step."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _STUCK_STEP], capture_output=True, text=True, timeout=25)
    assert result.returncode == 124, result.stdout + result.stderr
    assert "rank 1: step 5 has not finished after 1 s (--ddp_timeout): another rank is hung or dead" in result.stdout
