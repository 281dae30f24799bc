"""benchmarks/gpu_check.py: without CUDA it says so and exits 0; its steps run (on a CPU, tiny) and print one table."""

import importlib.util
import os

import pytest
import torch


SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "gpu_check.py")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_exits_0(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_its_steps_run_on_a_cpu_and_print_one_table(gpu_check, capsys):
    argv = ["--device", "cpu", "--num_layers", "1", "--hidden_size", "32", "--num_heads", "2", "--seq_len", "40"]
    assert gpu_check.main(argv + ["--max_batch", "4", "--train_steps", "4", "--codec", "tiny"]) == 0
    out = capsys.readouterr().out
    rows = ["parity sdpa float32 hidden", "parity eager bf16 autocast logits", "train mlm bf16", "train classifier"]
    rows += ["train MLM bf16, batch 4 x 40", "inference float32", "codec (tiny)"]
    for row in rows:
        assert row in out, out
    assert "FAIL" not in out


def test_model_flops_per_token_counts_the_non_embedding_parameters(gpu_check):
    args = gpu_check.parse_args(["--num_layers", "2", "--hidden_size", "64", "--num_heads", "4"])
    config = gpu_check.config_of(args)
    per_layer = 4 * (64 * 64 + 64) + 2 * (64 * 256) + 256 + 64 + 2 * 2 * 64  # attention, MLP, LayerNorms
    expected = 6 * 2 * per_layer + 12 * 2 * 64 * 752
    assert gpu_check.model_flops_per_token(config, 752) == expected
