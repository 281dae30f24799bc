"""run_cross_validation.py on synthesised clips in 3 folds with a tiny model: each fold is tested once on its own
clips, trained on the others, and the summary is the mean and sample standard deviation of the folds' results."""

import csv
import json
import os

import datasets
import numpy as np
import pytest
import torch

import audioformer.modeling_audioformer  # noqa: F401 - registers the Auto classes
import run_cross_validation
from audioformer.modeling_audioformer import AudioFormerForAudioClassification
from audioformer.training.collators import pad_code_rows
from audioformer.training.cross_validation import config_to_argv, summarize, without_flags


TINY_OVERRIDES = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,max_position_embeddings=96"
)


@pytest.fixture(scope="module")
def esc_like(tmp_path_factory):
    """An ESC-50-like CSV: `filename` (relative to the CSV), `category`, `fold` (1..3, 10 clips each)."""
    from audioformer.training.demo_data import write_demo_audiofolder
    from audioformer.training.tiny_codec import build_tiny_feature_extractor

    root = tmp_path_factory.mktemp("cv")
    build_tiny_feature_extractor(root / "codec", seed=0, max_duration=1.0)
    audio = write_demo_audiofolder(str(root / "audio"), num_train=30, num_validation=2, seed=0)
    with open(os.path.join(audio, "train", "metadata.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    with open(root / "esc.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "category", "fold"])
        for i, row in enumerate(rows):
            writer.writerow([f"audio/train/{row['file_name']}", row["label"], i % 3 + 1])
    return root


def test_three_folds_each_tested_once(esc_like):
    out = esc_like / "cv_out"
    summary = run_cross_validation.main(
        [
            "--train_file",
            str(esc_like / "esc.csv"),
            "--audio_column_name",
            "filename",
            "--label_column_name",
            "category",
            "--fold_column",
            "fold",
            "--feature_extractor_name",
            str(esc_like / "codec"),
            "--tokenized_cache_dir",
            str(esc_like / "codes"),
            "--config_overrides",
            TINY_OVERRIDES,
            "--validation_split_percentage",
            "10",
            "--do_train",
            "--do_eval",
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "4",
            "--learning_rate",
            "1e-3",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "1",
            "--save_strategy",
            "steps",
            "--save_steps",
            "1",
            "--load_best_model_at_end",
            "--metric_for_best_model",
            "accuracy",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
            "--seed",
            "0",
            "--use_cpu",
            "--output_dir",
            str(out),
        ]
    )
    assert summary["folds"] == ["1", "2", "3"]
    all_codes = datasets.load_from_disk(str(esc_like / "codes"))["train"]
    per_fold = {}
    for fold in ("1", "2", "3"):
        codes = datasets.load_from_disk(str(out / "fold_codes" / fold))
        test_folds = {str(v) for v in codes["test"]["fold"]}
        assert test_folds == {fold} and fold not in {str(v) for v in codes["train"]["fold"]}
        assert len(codes["test"]) == 10 and len(codes["train"]) == 20
        assert sorted(list(codes["test"]["input_ids"]) + list(codes["train"]["input_ids"])) == sorted(
            all_codes["input_ids"]
        )
        with open(out / f"fold_{fold}" / "all_results.json") as f:
            per_fold[fold] = json.load(f)
        # The reported test accuracy is the saved fold model's on exactly that fold's clips.
        model = AudioFormerForAudioClassification.from_pretrained(out / f"fold_{fold}").eval()
        with torch.no_grad():
            logits = model(**pad_code_rows([codes["test"][i] for i in range(10)])).logits
        labels = torch.tensor([model.config.label2id[c] for c in codes["test"]["category"]])
        assert per_fold[fold]["test_accuracy"] == pytest.approx((logits.argmax(-1) == labels).float().mean().item())
        assert "eval_accuracy" in per_fold[fold]  # selected on a hold-out of its training folds
    values = [per_fold[f]["test_accuracy"] for f in ("1", "2", "3")]
    assert summary["test_accuracy"]["mean"] == pytest.approx(np.mean(values))
    assert summary["test_accuracy"]["std"] == pytest.approx(np.std(values, ddof=1))
    with open(out / "cross_validation_results.json") as f:
        assert json.load(f) == json.loads(json.dumps(summary))


def test_summary_and_flag_helpers():
    summary = summarize(
        {"a": {"test_accuracy": 0.5, "test_runtime": 3.0}, "b": {"test_accuracy": 0.7, "test_runtime": 1.0}}
    )
    assert set(summary) == {"folds", "test_accuracy"}
    assert summary["test_accuracy"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert config_to_argv({"do_train": True, "folds": [1, 2], "x": None, "lr": 0.1}) == [
        "--do_train",
        "true",
        "--folds",
        "1",
        "2",
        "--lr",
        "0.1",
    ]
    assert without_flags(
        ["--data_dir", "d", "--seed=1", "--output_dir=o", "--x", "y"], ("--data_dir", "--output_dir")
    ) == [
        "--seed=1",
        "--x",
        "y",
    ]


def test_refuses_a_test_split(esc_like):
    with pytest.raises(ValueError, match="each fold the test split"):
        run_cross_validation.main(
            ["--train_file", str(esc_like / "esc.csv"), "--test_split_name", "eval", "--output_dir", "x", "--use_cpu"]
        )
