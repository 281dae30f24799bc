"""
`--input_codebooks 0 1 2 3` end to end on synthesised clips and the tiny codec: fused MLM pretraining (per-codebook
accuracy), then FT1 from that checkpoint and FT2 with it as the anchor and a single-codebook positive.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

# The audiofolder writer of the run_mlm tests (this folder is on sys.path, as for every test module here).
from test_run_mlm import write_clips


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_MODEL = "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64"
COMMON = [
    "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--learning_rate", "5e-3",
    "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", "--seed", "0",
    "--dataloader_num_workers", "0", "--eval_strategy", "no", "--save_strategy", "no", "--do_train", "--do_eval",
]  # fmt: skip


def run(script, args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_codec_dir):
    root = tmp_path_factory.mktemp("fused_audio")
    write_clips(root / "train", 12, seed=0)
    write_clips(root / "validation", 6, seed=1)
    source = ["--data_dir", str(root), "--feature_extractor_name", tiny_codec_dir]
    return source + ["--tokenized_cache_dir", str(root / "tokenized")]


@pytest.fixture(scope="module")
def fused_mlm(data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fused_mlm"))
    args = [*data, "--input_codebooks", "0", "1", "2", "3", "--config_overrides", TINY_MODEL]
    run("run_mlm.py", [*args, "--output_dir", out, "--num_train_epochs", "2", *COMMON])
    return out


def test_fused_pretraining_reports_each_codebook(fused_mlm):
    with open(os.path.join(fused_mlm, "config.json")) as f:
        config = json.load(f)
    assert config["input_codebooks"] == [0, 1, 2, 3] and config["codebook_index"] == 0
    with open(os.path.join(fused_mlm, "eval_results.json")) as f:
        results = json.load(f)
    per_codebook = [results[f"eval_accuracy_c{k}"] for k in (1, 2, 3, 4)]
    assert all(0.0 <= a <= 1.0 for a in per_codebook)
    assert results["eval_accuracy"] == pytest.approx(np.mean(per_codebook))
    with open(os.path.join(fused_mlm, "trainer_state.json")) as f:
        losses = [e["loss"] for e in json.load(f)["log_history"] if "loss" in e]
    assert abs(losses[0] - np.log(1028)) < 0.5  # mean over codebooks of an untrained uniform guess
    card = open(os.path.join(fused_mlm, "README.md")).read()
    assert "codebook rows C1 + C2 + C3 + C4" in card and "accuracy_c4" in card


def test_ft1_and_ft2_from_a_fused_checkpoint(fused_mlm, data, tmp_path):
    ft1 = str(tmp_path / "ft1")
    run("run_classification.py", [*data, "--model_name_or_path", fused_mlm, "--output_dir", ft1, *COMMON])
    with open(os.path.join(ft1, "config.json")) as f:
        assert json.load(f)["input_codebooks"] == [0, 1, 2, 3]
    with open(os.path.join(ft1, "eval_results.json")) as f:
        assert 0.0 <= json.load(f)["eval_accuracy"] <= 1.0

    from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerModel

    positive = str(tmp_path / "c2")  # a single-codebook encoder of C2 (untrained: the run's wiring is what is tested)
    sizes = dict(kv.split("=") for kv in TINY_MODEL.split(","))
    AudioFormerModel(AudioFormerConfig(codebook_index=1, **{k: int(v) for k, v in sizes.items()})).save_pretrained(
        positive
    )
    ft2 = str(tmp_path / "ft2")
    output = run(
        "run_classification.py",
        [*data, "--model_name_or_path", fused_mlm, "--mpc_positive_models", positive, "--output_dir", ft2,
         "--log_level", "info", *COMMON],
    )  # fmt: skip
    assert "FT2: 1 frozen positive model(s) on codebook rows [[1]]" in output
    with open(os.path.join(ft2, "eval_results.json")) as f:
        assert 0.0 <= json.load(f)["eval_accuracy"] <= 1.0
