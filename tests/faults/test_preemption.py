"""Defect 2 of issue 23: SIGTERM (and SIGUSR1, which `sbatch --signal` sends) killed the run at once, losing every
step since the last save and leaving the folder lock behind."""

import os
import signal
import subprocess
import time

import pytest
from conftest import (
    REPO,
    STEPS,
    assert_same_weights,
    global_step,
    mlm_args,
    run_mlm,
    run_mlm_signalled,
    script_env,
    slow_script,
)


@pytest.mark.slow  # a run_mlm.py subprocess (or two)
@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1"])
def test_a_stop_signal_saves_a_checkpoint_and_the_resume_is_exact(name, full_run, codes_dir, tiny_codec_dir, tmp_path):
    out = str(tmp_path / "out")
    args = mlm_args(codes_dir, tiny_codec_dir, out, *STEPS)
    returncode, output = run_mlm_signalled(args, at_step=5, name=name)
    assert returncode == 128 + getattr(signal, name), output[-3000:]
    assert f"saved checkpoint-6 on {name}; resume with --resume_from_checkpoint last" in output
    assert "Traceback" not in output
    assert sorted(n for n in os.listdir(out) if "checkpoint" in n) == ["checkpoint-4", "checkpoint-6"]
    assert not os.path.exists(os.path.join(out, "model.safetensors"))  # an unfinished run has no final model
    if name == "SIGUSR1":
        return  # the same path from here on

    _, output = run_mlm([*args, "--resume_from_checkpoint", "last"])
    assert "left by pid" not in output  # the lock was released, not left to be taken over
    assert f"resuming from {os.path.join(out, 'checkpoint-6')}" in output
    assert global_step(out) == 12
    assert_same_weights(full_run, out)


@pytest.mark.slow  # a run_mlm.py subprocess (or two)
def test_sigterm_under_accelerate_launch_saves_one_checkpoint(codes_dir, tiny_codec_dir, tmp_path, launch):
    """The launcher (torch elastic) forwards SIGTERM to both ranks, then waits up to 30 s before SIGKILL: both finish
    their step, agree on it, and write one checkpoint together, which loads (resumed in one process here: a second
    2-process run would double the test's time)."""
    out, marker = str(tmp_path / "out"), tmp_path / "slow"
    args = mlm_args(codes_dir, tiny_codec_dir, out, *STEPS)
    env = script_env(ACCELERATE_USE_CPU="1", SLOW_AFTER_STEP="5", SLOW_MARKER=str(marker))
    process = subprocess.Popen(
        launch(slow_script(tmp_path), *args),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 240
        while not marker.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "no step 6"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert "on SIGTERM; resume with --resume_from_checkpoint last" in output, output[-4000:]
    assert output.count("SIGTERM received: stopping after step") == 2  # each rank stopped after its step
    saved = sorted(int(n.split("-")[1]) for n in os.listdir(out) if n.startswith("checkpoint-"))
    assert saved[-1] >= 6 and saved[-1] < 12, saved
    assert not any(n.startswith("tmp-") for n in os.listdir(out))
    _, output = run_mlm([*args, "--resume_from_checkpoint", "last"])
    assert "left by pid" not in output and f"resuming from {os.path.join(out, f'checkpoint-{saved[-1]}')}" in output
    assert global_step(out) == 12


def test_resume_auto_starts_fresh_only_when_there_is_no_checkpoint(full_run, tmp_path):
    """One job script for the first start and every requeue: `auto` is `last`, or a fresh start in an empty folder;
    torn checkpoints alone are an error, not a silent restart."""
    from transformers import TrainingArguments

    from audioformer.training.runs import resolve_checkpoint

    def resolve(folder):
        args = TrainingArguments(str(folder), resume_from_checkpoint="auto", do_train=True, use_cpu=True)
        return resolve_checkpoint(args)

    assert resolve(tmp_path / "empty") is None
    assert resolve(full_run) == os.path.join(full_run, "checkpoint-12")
    (tmp_path / "torn" / "tmp-checkpoint-3").mkdir(parents=True)
    with pytest.raises(ValueError, match="no checkpoint to resume from .*1 incomplete"):
        resolve(tmp_path / "torn")
