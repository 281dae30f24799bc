"""benchmarks/bench_fused.py runs (tiny, no memory subprocesses) and prints one line per step with its ratio."""

import os
import subprocess
import sys


SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "bench_fused.py")


def test_it_runs_and_prints_the_ratios():
    argv = ["--num_layers", "1", "--hidden_size", "32", "--num_heads", "4", "--lengths", "20,12", "--repeats", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, SCRIPT, *argv, "--skip_memory"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[1].startswith("command: python benchmarks/bench_fused.py --num_layers 1")
    for step, line in zip(("mlm", "classify", "infer"), lines[2:]):
        assert line.startswith(step) and "ratio" in line
