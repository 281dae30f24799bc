"""
The measured rows of the fault table in docs/fault-tolerance.md: kill -9 at random moments of a run (then
`--resume_from_checkpoint last`, final weights compared with an uninterrupted run), and a hung rank (SIGSTOP) under
`accelerate launch` with --ddp_timeout, and SIGTERM to a 2-rank run resumed with 2 ranks. The other rows are the
tests of tests/faults/ (one test per fault).

    python benchmarks/fault_table.py --trials 5 --ddp_timeout 20
    python benchmarks/fault_table.py --only hung --ddp_timeout 20 --hung_wait 120
    python benchmarks/fault_table.py --only ddp

Tiny seeded model and codec on CPU, 48 synthetic code clips, 12 steps with a checkpoint every 4 (as the tests).
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import datasets
import numpy as np
from safetensors.torch import load_file

from audioformer.training.tiny_codec import build_tiny_feature_extractor


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64"
FLAGS = [
    "--do_train", "--config_overrides", TINY,
    "--per_device_train_batch_size", "4", "--learning_rate", "5e-3", "--logging_steps", "1", "--report_to", "none",
    "--disable_tqdm", "true", "--use_cpu", "true", "--seed", "0", "--dataloader_num_workers", "0",
    "--codebook_index", "0", "--max_steps", "12", "--save_strategy", "steps", "--save_steps", "4",
]  # fmt: skip
LAUNCH = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port"]  # fmt: skip
SLOW_STEPS = r"""
import os, sys, time
from audioformer.training.checkpointing import AtomicCheckpointTrainer
import run_mlm
real = AtomicCheckpointTrainer.training_step
def slow(self, *args, **kwargs):
    if self.state.global_step >= 3:
        open(os.environ["MARKER"], "w").close()
        time.sleep(0.5)
    return real(self, *args, **kwargs)
AtomicCheckpointTrainer.training_step = slow
run_mlm.main(sys.argv[1:])
"""


def write_codes(path, num_clips=48, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_clips):
        codes = rng.integers(3, 1027, size=(4, int(rng.integers(20, 60)) + 2)).astype(np.int16)
        codes[:, 0], codes[:, -1] = 0, 2
        rows.append(codes.tolist())
    features = datasets.Features(
        {"input_ids": datasets.Sequence(datasets.Sequence(datasets.Value("int16"))), "length": datasets.Value("int32")}
    )
    ds = datasets.Dataset.from_dict({"input_ids": rows, "length": [len(r[0]) for r in rows]}, features=features)
    datasets.DatasetDict({"train": ds}).save_to_disk(path)


def env(**extra):
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=REPO, OMP_NUM_THREADS="1", **extra)


def run(args, **extra):
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_mlm.py"), *args], cwd=REPO, env=env(**extra),
                            capture_output=True, text=True)  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def max_diff(a, b):
    wa, wb = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)


def kill_trials(work, data, trials, rng):
    full = os.path.join(work, "full")
    started = time.perf_counter()
    rc, output = run([*data, "--output_dir", full, *FLAGS])
    assert rc == 0, output[-3000:]
    duration = time.perf_counter() - started
    print(f"uninterrupted run: {duration:.1f} s (start-up included)")
    for trial in range(trials):
        out = os.path.join(work, f"killed-{trial}")
        delay = rng.uniform(0.5 * duration, duration)
        cmd = [sys.executable, os.path.join(REPO, "run_mlm.py"), *data, "--output_dir", out, *FLAGS]
        process = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        finished = process.poll() is not None
        process.kill()
        process.wait()
        left = sorted(n for n in os.listdir(out) if "checkpoint" in n) if os.path.isdir(out) else []
        rc, output = run([*data, "--output_dir", out, *FLAGS, "--resume_from_checkpoint", "auto"])
        resumed = [line.split("resuming from ")[-1] for line in output.splitlines() if "resuming from" in line]
        skipped = sum("skipping" in line for line in output.splitlines())
        diff = max_diff(full, out) if rc == 0 else float("nan")
        state = "finished before the kill" if finished else f"killed at {delay:.1f} s"
        print(f"trial {trial}: {state}; left {left}; resumed from {[os.path.basename(r) for r in resumed] or 'start'}"
              f" ({skipped} skipped); rc {rc}; max |weights - uninterrupted| = {diff}")  # fmt: skip


def ddp_sigterm(work, data, port=29631):
    """SIGTERM to `accelerate launch` (2 ranks) at step 3 or later, resume with 2 ranks, compare with an uninterrupted
    2-rank run."""
    full, out, marker = (os.path.join(work, n) for n in ("ddp-full", "ddp-signalled", "ddp-marker"))
    script = os.path.join(work, "slow_run_mlm.py")
    with open(script, "w") as f:
        f.write(SLOW_STEPS)
    launch = [sys.executable, *LAUNCH, str(port)]
    ddp_env = env(ACCELERATE_USE_CPU="1", MARKER=marker)
    done = subprocess.run([*launch, os.path.join(REPO, "run_mlm.py"), *data, "--output_dir", full, *FLAGS], cwd=REPO,
                          env=ddp_env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    process = subprocess.Popen([*launch, script, *data, "--output_dir", out, *FLAGS], cwd=REPO, env=ddp_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    while not os.path.exists(marker) and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    saved = [line.split(" - ")[-1] for line in output.splitlines() if "on SIGTERM; resume" in line]
    left = sorted(n for n in os.listdir(out) if "checkpoint" in n)
    resumed = subprocess.run([*launch, os.path.join(REPO, "run_mlm.py"), *data, "--output_dir", out, *FLAGS,
                              "--resume_from_checkpoint", "last"], cwd=REPO, env=ddp_env, capture_output=True,
                             text=True)  # fmt: skip
    diff = max_diff(full, out) if resumed.returncode == 0 else float("nan")
    print(f"SIGTERM to accelerate launch (2 ranks): rc {process.returncode}; {saved[:1]}; left {left}; resumed with "
          f"2 ranks: rc {resumed.returncode}; max |weights - uninterrupted 2-rank run| = {diff}")  # fmt: skip


def hung_rank(work, data, timeout, wait):
    out, marker = os.path.join(work, "hung"), os.path.join(work, "slow-marker")
    script = os.path.join(work, "slow_run_mlm.py")
    with open(script, "w") as f:
        f.write(SLOW_STEPS)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29617", script, *data,
           "--output_dir", out, *FLAGS, "--ddp_timeout", str(timeout)]  # fmt: skip
    process = subprocess.Popen(cmd, cwd=REPO, env=env(ACCELERATE_USE_CPU="1", MARKER=marker),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    while not os.path.exists(marker) and process.poll() is None:
        time.sleep(0.1)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    rank1 = None
    for pid in children:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if b"LOCAL_RANK=1\0" in f.read():
                rank1 = int(pid)
    os.kill(rank1, signal.SIGSTOP)
    stopped = time.perf_counter()
    try:
        output, _ = process.communicate(timeout=timeout + wait)
        ended = f"the job ended {time.perf_counter() - stopped:.1f} s later, rc {process.returncode}"
    except subprocess.TimeoutExpired:
        ended = f"the job had not ended {timeout + wait} s later (killed then)"
        output = ""
    finally:
        for pid in [*map(int, children), process.pid]:  # the ranks, then the launcher
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
    lines = [line for line in output.splitlines() if "timeout" in line.lower() or "Timed out" in line]
    print(f"hung rank (SIGSTOP) with --ddp_timeout {timeout}: {ended}")
    print("  first timeout line:", (lines[0][:300] if lines else "none"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--ddp_timeout", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hung_wait", type=int, default=120, help="Seconds past --ddp_timeout to wait for the job.")
    parser.add_argument("--only", choices=("all", "kills", "ddp", "hung"), default="all")
    args = parser.parse_args()
    print(
        f"python benchmarks/fault_table.py --trials {args.trials} --ddp_timeout {args.ddp_timeout} --seed {args.seed} "
        f"--hung_wait {args.hung_wait} --only {args.only}"
    )
    work = tempfile.mkdtemp(prefix="fault-table-")
    build_tiny_feature_extractor(os.path.join(work, "codec"), seed=0, max_duration=2.0)
    write_codes(os.path.join(work, "codes"))
    data = [
        "--tokenized_dataset",
        os.path.join(work, "codes"),
        "--feature_extractor_name",
        os.path.join(work, "codec"),
    ]
    if args.only in ("all", "kills"):
        kill_trials(work, data, args.trials, random.Random(args.seed))
    if args.only in ("all", "ddp"):
        ddp_sigterm(work, data)
    if args.only in ("all", "hung"):
        hung_rank(work, data, args.ddp_timeout, args.hung_wait)
    print(f"(work folder: {work})")


if __name__ == "__main__":
    main()
