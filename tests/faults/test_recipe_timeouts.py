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
