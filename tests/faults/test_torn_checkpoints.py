"""Defect 3 of issue 23: a torn file in the newest checkpoint was picked by `last` (only the names were checked) and
crashed inside transformers naming no file (SafetensorError, PytorchStreamReader, EOFError, Errno 22)."""

import json
import os
import shutil

import pytest
from conftest import STEPS, global_step, mlm_args, run_mlm

from audioformer.training.checkpointing import MANIFEST, find_resume_checkpoint


TORN_FILES = ["model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"]


def copy_checkpoints(full_run, out, steps=(4, 8)):
    os.makedirs(out)
    for step in steps:
        shutil.copytree(os.path.join(full_run, f"checkpoint-{step}"), os.path.join(out, f"checkpoint-{step}"))


def test_every_checkpoint_has_a_manifest_of_its_files(full_run):
    folder = os.path.join(full_run, "checkpoint-8")
    with open(os.path.join(folder, MANIFEST)) as f:
        files = json.load(f)["files"]
    on_disk = {
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
        if name != MANIFEST
    }
    assert set(files) == on_disk and {*TORN_FILES, "codec/model.safetensors"} <= on_disk
    assert all(files[name]["size"] == os.path.getsize(os.path.join(folder, name)) for name in files)


@pytest.mark.parametrize("name", TORN_FILES)
@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped"])
def test_last_skips_a_torn_checkpoint_naming_the_file(name, damage, full_run, tmp_path):
    out = str(tmp_path / "out")
    copy_checkpoints(full_run, out)
    path = os.path.join(out, "checkpoint-8", name)
    data = bytearray(open(path, "rb").read())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    else:  # same size, one byte changed (a bad sector, a bit flip)
        data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)
    last, skipped = find_resume_checkpoint(out)
    assert last == os.path.join(out, "checkpoint-4")
    assert skipped[0][0] == os.path.join(out, "checkpoint-8") and name in skipped[0][1], skipped


@pytest.mark.slow  # a run_mlm.py subprocess (or two)
def test_resume_last_falls_back_to_the_previous_complete_checkpoint(full_run, codes_dir, tiny_codec_dir, tmp_path):
    out = str(tmp_path / "out")
    copy_checkpoints(full_run, out)
    with open(os.path.join(out, "checkpoint-8", "model.safetensors"), "r+b") as f:
        f.truncate(100)
    _, output = run_mlm(mlm_args(codes_dir, tiny_codec_dir, out, *STEPS, "--resume_from_checkpoint", "last"))
    assert f"skipping {os.path.join(out, 'checkpoint-8')}: model.safetensors is torn (100 bytes," in output
    resumed = f"--resume_from_checkpoint last: resuming from {os.path.join(out, 'checkpoint-4')}"
    assert f"WARNING - audioformer.training.runs - {resumed}" in output
    assert global_step(out) == 12
