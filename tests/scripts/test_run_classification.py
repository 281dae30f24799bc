"""End-to-end runs of run_classification.py: tiny models, a tiny seeded codec, synthesised clips, few steps.

FT1 single-label (the demo entry point), FT1 multi-label with LSEP, FT2 with two frozen positive models (one
process), and FT2 multi-label with weighted sampling under `accelerate launch` with two CPU processes (gloo).
"""

import glob
import hashlib
import json
import os
import subprocess
import sys

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForAudioClassification, HfArgumentParser, TrainingArguments

import modeling_audioformer  # noqa: F401 - registers the Auto classes
import run_classification
from modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification, AudioFormerForMaskedLM
from training.collators import pad_code_rows


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


TINY_OVERRIDES = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,max_position_embeddings=96"
)
TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=96
)
DIGESTS = {}  # sha256 of the positive checkpoints' weights when written
COMMON = [
    "--do_train",
    "--do_eval",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "8",
    "--learning_rate",
    "1e-3",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--seed",
    "0",
    "--dataloader_num_workers",
    "0",
    "--use_cpu",
    "--save_strategy",
    "no",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Tiny codec, a multi-label demo audiofolder and three tiny MLM checkpoints (codebooks C1, C2, C3)."""
    from training.demo_data import write_demo_audiofolder
    from training.tiny_codec import build_tiny_feature_extractor

    root = tmp_path_factory.mktemp("run_classification")
    build_tiny_feature_extractor(root / "codec", seed=0, max_duration=1.0)
    write_demo_audiofolder(
        str(root / "audio"), num_train=20, num_validation=10, seed=0, multi_label=True, duration=1.0
    )
    for k in range(3):
        torch.manual_seed(10 + k)
        AudioFormerForMaskedLM(AudioFormerConfig(codebook_index=k, **TINY)).save_pretrained(root / f"mlm_c{k + 1}")
    DIGESTS.update({k + 1: file_digest(root / f"mlm_c{k + 1}" / "model.safetensors") for k in range(3)})
    return root


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def data_flags(root):
    return [
        "--data_dir",
        str(root / "audio"),
        "--feature_extractor_name",
        str(root / "codec"),
        "--tokenized_cache_dir",
        str(root / "tokenized"),
    ]


def eval_batch(root, num_clips=4):
    """A `(B, K, T)` batch of the first validation clips, from the tokenized cache the runs wrote."""
    codes = datasets.load_from_disk(str(root / "tokenized"))["validation"]
    return pad_code_rows([codes[i] for i in range(num_clips)])


def check_saved_model(output_dir, root):
    """The folder reloads with AutoModelForAudioClassification and gives the logits of the class itself."""
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert os.path.isfile(os.path.join(output_dir, name)), name
    pickles = [os.path.basename(p) for p in glob.glob(os.path.join(output_dir, "*.bin"))]
    assert pickles in ([], ["training_args.bin"]), pickles
    with open(os.path.join(output_dir, "config.json")) as f:
        assert "auto_map" in json.load(f)
    auto = AutoModelForAudioClassification.from_pretrained(output_dir).eval()
    direct = AudioFormerForAudioClassification.from_pretrained(output_dir).eval()
    batch = eval_batch(root)
    with torch.no_grad():
        logits = auto(**batch).logits
        torch.testing.assert_close(logits, direct(**batch).logits)
    # ... and the weights are exactly the saved ones (a reload that re-initialised anything would differ).
    saved = load_file(os.path.join(output_dir, "model.safetensors"))
    for key, value in auto.state_dict().items():
        if key in saved:
            torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    assert not any(k.startswith("cls.") for k in saved)
    return auto, logits


def read_results(output_dir):
    with open(os.path.join(output_dir, "all_results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def ft1_single(workdir):
    """The demo entry point (no dataset flag) with tiny settings: FT1, single-label, from scratch."""
    out = workdir / "ft1_single"
    run_classification.main(
        [
            "--demo_dir",
            str(workdir / "demo"),
            "--output_dir",
            str(out),
            "--max_steps",
            "4",
            "--config_overrides",
            TINY_OVERRIDES,
        ]
    )
    return out


def test_ft1_single_label_demo(ft1_single, workdir):
    results = read_results(ft1_single)
    assert {"eval_accuracy", "eval_loss", "train_loss"} <= set(results)
    assert 0.0 <= results["eval_accuracy"] <= 1.0
    config = AudioFormerConfig.from_pretrained(ft1_single)
    assert config.problem_type == "single_label_classification"
    assert config.id2label == dict(enumerate(sorted(["chirp", "clicks", "high_tone", "low_tone", "noise_band"])))
    assert os.path.isfile(workdir / "demo" / "audio" / "README.txt")
    # The demo's clips are its own (written under --demo_dir), so check the reload on them.
    auto, _ = check_saved_model(str(ft1_single), workdir / "demo")
    assert os.path.isfile(ft1_single / "README.md")


def test_ft1_multi_label_lsep(workdir):
    out = workdir / "ft1_multi"
    metrics = run_classification.main(
        data_flags(workdir)
        + COMMON
        + [
            "--output_dir",
            str(out),
            "--label_column_name",
            "labels",
            "--loss",
            "lsep",
            "--config_overrides",
            TINY_OVERRIDES,
            "--max_steps",
            "4",
            "--max_duration",
            "1.0",
        ]
    )
    assert {"eval_mAP", "eval_micro_f1", "eval_macro_f1", "eval_loss"} <= set(metrics)
    assert 0.0 < metrics["eval_mAP"] <= 1.0
    config = AudioFormerConfig.from_pretrained(out)
    assert config.problem_type == "multi_label_classification" and config.multi_label_loss == "lsep"
    assert config.num_labels == 5
    check_saved_model(str(out), workdir)


def test_ft2_two_positive_models(workdir, monkeypatch):
    """FT2 in one process from an MLM checkpoint: the positives stay frozen and out of the saved model."""
    captured = []
    real_load = run_classification.load_positive_models

    def spy(*args, **kwargs):
        models = real_load(*args, **kwargs)
        captured.extend(models)
        return models

    monkeypatch.setattr(run_classification, "load_positive_models", spy)
    out = workdir / "ft2_single"
    metrics = run_classification.main(
        data_flags(workdir)
        + COMMON
        + [
            "--output_dir",
            str(out),
            "--label_column_name",
            "label",
            "--model_name_or_path",
            str(workdir / "mlm_c1"),
            "--mpc_positive_models",
            str(workdir / "mlm_c2"),
            str(workdir / "mlm_c3"),
            "--mpc_alpha",
            "0.5",
            "--max_steps",
            "6",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "3",
            "--save_strategy",
            "steps",
            "--save_steps",
            "3",
            "--load_best_model_at_end",
            "--metric_for_best_model",
            "accuracy",
            "--early_stopping_patience",
            "2",
        ]
    )
    assert {"eval_accuracy", "eval_loss"} <= set(metrics)

    assert [m.config.codebook_index for m in captured] == [1, 2]
    for k, model in zip((2, 3), captured):
        on_disk = load_file(str(workdir / f"mlm_c{k}" / "model.safetensors"))
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, on_disk["roformer." + key], rtol=0, atol=0)
        assert not model.training

    _, logits = check_saved_model(str(out), workdir)
    # The anchor was trained: its backbone differs from the MLM checkpoint it started from.
    start = load_file(str(workdir / "mlm_c1" / "model.safetensors"))
    saved = load_file(str(out / "model.safetensors"))
    key = "roformer.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(start[key], saved[key])
    assert set(saved) == set(AudioFormerForAudioClassification(AudioFormerConfig(num_labels=5, **TINY)).state_dict())


def test_ft2_multi_label_weighted_two_processes(workdir, free_port):
    """`accelerate launch` with two CPU processes (gloo): FT2, multi-label, weighted sampling."""
    out = workdir / "ft2_ddp"
    env = dict(
        os.environ,
        ACCELERATE_USE_CPU="true",
        OMP_NUM_THREADS="1",
        PYTHONPATH=REPO,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    cmd = (
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port),
            os.path.join(REPO, "run_classification.py"),
        ]
        + data_flags(workdir)
        + COMMON
        + [
            "--output_dir",
            str(out),
            "--label_column_name",
            "labels",
            "--model_name_or_path",
            str(workdir / "mlm_c1"),
            "--mpc_positive_models",
            str(workdir / "mlm_c2"),
            str(workdir / "mlm_c3"),
            "--weighted_sampling",
            "--max_steps",
            "3",
            "--ddp_backend",
            "gloo",
        ]
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=str(workdir))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Process rank: 0, world size: 2" in log and "Process rank: 1, world size: 2" in log, log[-3000:]
    results = read_results(out)
    assert {"eval_mAP", "eval_micro_f1", "eval_macro_f1"} <= set(results)
    with open(out / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == 3
    check_saved_model(str(out), workdir)
    for k in (2, 3):  # the positives' weights are untouched
        assert file_digest(workdir / f"mlm_c{k}" / "model.safetensors") == DIGESTS[k]


# ---------------------------------------------------------------------------------------------- pieces


def test_mlm_checkpoint_head_dropped_backbone_kept(workdir):
    model = AudioFormerForAudioClassification.from_pretrained(str(workdir / "mlm_c1"), num_labels=3)
    mlm = load_file(str(workdir / "mlm_c1" / "model.safetensors"))
    for key, value in model.state_dict().items():
        if key.startswith("roformer."):
            torch.testing.assert_close(value, mlm[key], rtol=0, atol=0)
    assert "classifier.weight" in model.state_dict() and not any(k.startswith("cls.") for k in model.state_dict())


def test_labels_checked_before_tokenizing(workdir):
    """A wrong label column or a missing label stops the run before any clip is tokenized."""
    cache = workdir / "tokenized_never"
    flags = (
        [
            "--data_dir",
            str(workdir / "audio"),
            "--feature_extractor_name",
            str(workdir / "codec"),
            "--tokenized_cache_dir",
            str(cache),
        ]
        + COMMON
        + ["--output_dir", str(workdir / "x")]
    )
    with pytest.raises(ValueError, match="No label column 'tag' in split 'train'"):
        run_classification.main(flags + ["--label_column_name", "tag"])
    with pytest.raises(ValueError, match="--loss ce is for single-label"):
        run_classification.main(flags + ["--label_column_name", "labels", "--loss", "ce"])
    assert not cache.exists()


def test_bad_flags_stop_early(workdir):
    with pytest.raises(ValueError, match="needs evaluations"):
        run_classification.main(
            data_flags(workdir) + COMMON + ["--output_dir", str(workdir / "x"), "--early_stopping_patience", "2"]
        )
    with pytest.raises(ValueError, match="--loss"):
        run_classification.main(data_flags(workdir) + COMMON + ["--output_dir", str(workdir / "x"), "--loss", "hinge"])
    with pytest.raises(ValueError, match="--resume_from_checkpoint last: no checkpoint"):  # as run_mlm.py
        run_classification.main(
            data_flags(workdir) + COMMON + ["--output_dir", str(workdir / "x"), "--resume_from_checkpoint", "last"]
        )
    with pytest.raises(ValueError, match="--loss ce is for single-label"):
        run_classification.main(
            data_flags(workdir)
            + COMMON
            + [
                "--output_dir",
                str(workdir / "x"),
                "--label_column_name",
                "labels",
                "--loss",
                "ce",
                "--config_overrides",
                TINY_OVERRIDES,
            ]
        )


def test_demo_detection():
    assert run_classification.is_demo([])
    assert run_classification.is_demo(["--output_dir", "x"])
    assert not run_classification.is_demo(["--data_dir=x"])
    assert not run_classification.is_demo(["configs/ft_as20k_ft1.json"])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "ft_*.json"))))
def test_recipe_configs_parse(path):
    parser = HfArgumentParser(
        (
            run_classification.ModelArguments,
            run_classification.DataTrainingArguments,
            run_classification.ClassificationArguments,
            TrainingArguments,
        )
    )
    with open(path) as f:
        recipe = json.load(f)
    recipe.pop("bf16", None)  # a GPU setting: TrainingArguments refuses it on a CPU-only machine
    model_args, data_args, cls_args, training_args = parser.parse_dict(recipe)
    assert model_args.model_name_or_path and training_args.do_train
    assert cls_args.loss in ("ce", "lsep")
    name = os.path.basename(path)
    if name.endswith("_ft2.json") and "stage2" not in name:  # AS-2M's stage 2 is FT1 in the paper
        assert len(cls_args.mpc_positive_models) == 3 and cls_args.mpc_alpha == 0.95
