"""End-to-end runs of run_classification.py: tiny models, a tiny seeded codec, synthesised clips, few steps.

FT1 single-label (the demo entry point), FT1 multi-label with LSEP (calibrated thresholds, test split), FT2 with two
frozen positive models (one process, selection on validation), early stopping, FT2 multi-label with weighted
sampling under `accelerate launch` with two CPU processes (gloo), and the demo's number with 1 and 2 threads.
Reported metrics are recomputed from the saved model by an independent path: transformers' RoFormerModel on the
same weights, the mean pooling and the linear head written out, and scikit-learn's metrics.
"""

import glob
import hashlib
import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from sklearn.metrics import average_precision_score, f1_score
from transformers import AutoModelForAudioClassification, RoFormerConfig, RoFormerModel

import audioformer.modeling_audioformer  # noqa: F401 - registers the Auto classes
import run_classification
from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
)
from audioformer.training.collators import pad_code_rows


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
    """Tiny codec, a multi-label demo audiofolder (train / validation / test), the same clips relabelled with a rare
    class, and three tiny MLM checkpoints (codebooks C1, C2, C3)."""
    from audioformer.training.demo_data import write_demo_audiofolder
    from audioformer.training.tiny_codec import build_tiny_feature_extractor

    root = tmp_path_factory.mktemp("run_classification")
    build_tiny_feature_extractor(root / "codec", seed=0, max_duration=1.0)
    write_demo_audiofolder(
        str(root / "audio"), num_train=20, num_validation=10, num_test=10, seed=0, multi_label=True, duration=1.0
    )
    relabel_with_a_rare_class(root / "audio", root / "imbalanced")
    for k in range(3):
        torch.manual_seed(10 + k)
        AudioFormerForMaskedLM(AudioFormerConfig(codebook_index=k, **TINY)).save_pretrained(root / f"mlm_c{k + 1}")
    DIGESTS.update({k + 1: file_digest(root / f"mlm_c{k + 1}" / "model.safetensors") for k in range(3)})
    return root


def relabel_with_a_rare_class(source, target):
    """The same audio, multi-label, two classes: 4 of the 20 training clips are "rare", the others "common"."""
    for split in ("train", "validation"):
        os.makedirs(target / split)
        with open(source / split / "metadata.jsonl") as f:
            rows = [json.loads(line) for line in f]
        with open(target / split / "metadata.jsonl", "w") as f:
            for i, row in enumerate(rows):
                os.symlink(source / split / row["file_name"], target / split / row["file_name"])
                label = "rare" if (i < 4 if split == "train" else i % 2 == 0) else "common"
                f.write(json.dumps({"file_name": row["file_name"], "labels": [label]}) + "\n")


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def data_flags(root, data="audio"):
    return [
        "--data_dir",
        str(root / data),
        "--feature_extractor_name",
        str(root / "codec"),
        "--tokenized_cache_dir",
        str(root / f"tokenized_{data}"),
    ]


def cached_codes(root, split, data="audio"):
    """The code rows a run tokenized for `split` ("train", "validation" or "test"), from its cache."""
    cache = root / f"tokenized_{data}"
    if split == "test":
        return datasets.load_from_disk(str(cache / "test_split"))["validation"]
    return datasets.load_from_disk(str(cache))[split]


def roformer_logits(output_dir, rows):
    """Logits of a saved classifier on code rows, computed independently of AudioFormer's code: transformers'
    RoFormerModel (eager) holding the saved backbone, then the mean over real positions and the linear head."""
    config = AudioFormerConfig.from_pretrained(output_dir)
    weights = load_file(os.path.join(output_dir, "model.safetensors"))
    twin = RoFormerModel(
        RoFormerConfig(
            vocab_size=config.vocab_size,
            embedding_size=config.embedding_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_position_embeddings,
            rotary_value=config.rotary_value,
            pad_token_id=config.pad_token_id,
            attn_implementation="eager",
        )
    ).eval()
    backbone = {k.removeprefix("roformer."): v for k, v in weights.items() if k.startswith("roformer.")}
    twin.load_state_dict(backbone, strict=True)
    batch = pad_code_rows([rows[i] for i in range(len(rows))])
    ids, mask = batch["input_ids"][:, config.codebook_index], batch["attention_mask"]
    with torch.no_grad():
        hidden = twin(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask[..., None].to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1)
    return (pooled @ weights["classifier.weight"].T + weights["classifier.bias"]).double().numpy()


def check_saved_model(output_dir, rows):
    """A ready Hub folder: the files, no pickle but training_args.bin, the Auto class reloads it, and its logits are
    those of the independent RoFormer path on the same code rows. Returns those logits."""
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert os.path.isfile(os.path.join(output_dir, name)), name
    pickles = [os.path.basename(p) for p in glob.glob(os.path.join(output_dir, "*.bin"))]
    assert pickles in ([], ["training_args.bin"]), pickles
    with open(os.path.join(output_dir, "config.json")) as f:
        assert "auto_map" in json.load(f)
    auto = AutoModelForAudioClassification.from_pretrained(output_dir).eval()
    assert not any(k.startswith("cls.") for k in load_file(os.path.join(output_dir, "model.safetensors")))
    expected = roformer_logits(output_dir, rows)
    with torch.no_grad():
        logits = auto(**pad_code_rows([rows[i] for i in range(len(rows))])).logits.double().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    return expected


def label_ids(output_dir, rows, column):
    """Class indices (single-label) or multi-hot rows (multi-label) of code rows, by the saved config's labels."""
    config = AudioFormerConfig.from_pretrained(output_dir)
    if column == "label":
        return np.array([config.label2id[row[column]] for row in rows])
    multi_hot = np.zeros((len(rows), config.num_labels), dtype=int)
    for i, row in enumerate(rows):
        multi_hot[i, [config.label2id[name] for name in row[column]]] = 1
    return multi_hot


def read_results(output_dir):
    with open(os.path.join(output_dir, "all_results.json")) as f:
        return json.load(f)


def read_state(output_dir):
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        return json.load(f)


def card_splits(output_dir):
    results = ModelCard.load(os.path.join(output_dir, "README.md")).data.to_dict()["model-index"][0]["results"]
    return {(r["dataset"]["split"], m["type"]): m["value"] for r in results for m in r["metrics"]}


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


def test_ft1_single_label_demo_reports_the_test_split(ft1_single, workdir):
    """The demo selects on its validation clips and reports accuracy on held-out test clips: both numbers are those
    of the saved model, recomputed here."""
    results = read_results(ft1_single)
    config = AudioFormerConfig.from_pretrained(ft1_single)
    assert config.problem_type == "single_label_classification"
    assert config.id2label == dict(enumerate(sorted(["chirp", "clicks", "high_tone", "low_tone", "noise_band"])))
    cache = workdir / "demo" / "tokenized"
    splits = {
        "eval": datasets.load_from_disk(str(cache))["validation"],
        "test": datasets.load_from_disk(str(cache / "test_split"))["validation"],
    }
    assert (len(splits["eval"]), len(splits["test"])) == (20, 40)
    for prefix, rows in splits.items():
        logits = check_saved_model(str(ft1_single), rows)
        accuracy = float((logits.argmax(-1) == label_ids(ft1_single, rows, "label")).mean())
        assert results[f"{prefix}_accuracy"] == pytest.approx(accuracy, abs=1e-9), prefix
    assert card_splits(ft1_single) == {
        ("test", "accuracy"): results["test_accuracy"],
        ("validation", "accuracy"): results["eval_accuracy"],
    }
    assert os.path.isfile(workdir / "demo" / "audio" / "README.txt")


def test_ft1_multi_label_lsep_calibrates_thresholds(workdir):
    """LSEP: decision thresholds are fitted on the validation split and stored; F1 on the test split uses them; mAP
    is scikit-learn's on the saved model's logits."""
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
            "--test_split_name",
            "test",
            "--config_overrides",
            TINY_OVERRIDES,
            "--max_steps",
            "4",
            "--max_duration",
            "1.0",
        ]
    )
    config = AudioFormerConfig.from_pretrained(out)
    assert config.problem_type == "multi_label_classification" and config.multi_label_loss == "lsep"
    assert config.num_labels == 5 and len(config.decision_thresholds) == 5  # recorded, folded into the bias

    for prefix, split in (("eval", "validation"), ("test", "test")):
        rows = cached_codes(workdir, split)
        logits = check_saved_model(str(out), rows)
        references = label_ids(out, rows, "labels")
        keep = references.any(axis=0)
        expected_map = average_precision_score(references[:, keep], logits[:, keep], average="macro")
        assert metrics[f"{prefix}_mAP"] == pytest.approx(expected_map, abs=1e-6), prefix
        predicted = (logits > 0).astype(int)  # calibrated: logit 0 is each class's threshold
        for average in ("micro", "macro"):
            expected_f1 = f1_score(references, predicted, average=average, zero_division=0)
            assert metrics[f"{prefix}_{average}_f1"] == pytest.approx(expected_f1, abs=1e-9), (prefix, average)
    # The folded thresholds are the F1-optimal ones of the validation split: no single shift of them does better there.
    rows = cached_codes(workdir, "validation")
    logits, references = roformer_logits(str(out), rows), label_ids(out, rows, "labels")
    best = f1_score(references, (logits > 0).astype(int), average="micro", zero_division=0)
    for shift in (-0.5, -0.1, 0.1, 0.5):
        assert f1_score(references, (logits > shift).astype(int), average="micro") <= best + 1e-12
    splits = card_splits(out)
    assert splits[("test", "mAP")] == pytest.approx(metrics["test_mAP"], abs=1e-6)
    assert splits[("validation", "mAP")] == pytest.approx(metrics["eval_mAP"], abs=1e-6)


def test_ft2_two_positive_models_select_on_validation(workdir, monkeypatch):
    """FT2 in one process from an MLM checkpoint: the positives stay frozen and out of the saved model; the best
    checkpoint of the validation split is the one saved, and the test split is evaluated with it."""
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
            "--test_split_name",
            "test",
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
            "2",
            "--save_strategy",
            "steps",
            "--save_steps",
            "2",
            "--load_best_model_at_end",
            "--metric_for_best_model",
            "loss",
        ]
    )
    assert [m.config.codebook_index for m in captured] == [1, 2]
    for k, model in zip((2, 3), captured):
        on_disk = load_file(str(workdir / f"mlm_c{k}" / "model.safetensors"))
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, on_disk["roformer." + key], rtol=0, atol=0)
        assert not model.training

    # Selection: the saved model is the validation-best of the evaluations during training (lowest eval_loss)...
    state = read_state(out)
    during = [e["eval_loss"] for e in state["log_history"] if "eval_loss" in e and e["step"] in (2, 4, 6)][:3]
    assert len(during) == 3 and state["best_metric"] == pytest.approx(min(during))
    assert metrics["eval_loss"] == pytest.approx(state["best_metric"], rel=1e-5)
    # ... and both reported numbers are that model's, recomputed from the saved folder.
    for prefix, split in (("eval", "validation"), ("test", "test")):
        rows = cached_codes(workdir, split)
        logits = check_saved_model(str(out), rows)
        accuracy = float((logits.argmax(-1) == label_ids(out, rows, "label")).mean())
        assert metrics[f"{prefix}_accuracy"] == pytest.approx(accuracy, abs=1e-9), prefix
    # The anchor was trained: its backbone differs from the MLM checkpoint it started from.
    start = load_file(str(workdir / "mlm_c1" / "model.safetensors"))
    saved = load_file(str(out / "model.safetensors"))
    key = "roformer.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(start[key], saved[key])
    assert set(saved) == set(AudioFormerForAudioClassification(AudioFormerConfig(num_labels=5, **TINY)).state_dict())


def test_early_stopping_stops(workdir):
    """With a learning rate of 0 the validation metric cannot improve after the first evaluation: patience 2 ends
    the run after the third evaluation, long before max_steps."""
    out = workdir / "early_stop"
    run_classification.main(
        data_flags(workdir)
        + COMMON
        + [
            "--output_dir",
            str(out),
            "--label_column_name",
            "label",
            "--config_overrides",
            TINY_OVERRIDES,
            "--learning_rate",
            "0",
            "--max_steps",
            "40",
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
            "--early_stopping_patience",
            "2",
        ]
    )
    state = read_state(out)
    assert state["global_step"] == 3
    assert [e["step"] for e in state["log_history"] if "eval_accuracy" in e][:3] == [1, 2, 3]


def test_csv_files_with_a_test_file(workdir):
    """CSV data (--train_file / --validation_file) with --test_file: the test file is tokenized apart, evaluated once,
    and named in the model card."""
    files = {}
    for split in ("train", "validation", "test"):
        with open(workdir / "audio" / split / "metadata.jsonl") as f:
            rows = [json.loads(line) for line in f]
        files[split] = workdir / "audio" / split / "clips.csv"
        with open(files[split], "w") as f:
            f.write("audio,label\n" + "".join(f"{r['file_name']},{r['label']}\n" for r in rows))
    out = workdir / "csv_run"
    metrics = run_classification.main(
        [
            "--train_file",
            str(files["train"]),
            "--validation_file",
            str(files["validation"]),
            "--test_file",
            str(files["test"]),
            "--feature_extractor_name",
            str(workdir / "codec"),
            "--tokenized_cache_dir",
            str(workdir / "tokenized_csv"),
            "--label_column_name",
            "label",
            "--config_overrides",
            TINY_OVERRIDES,
            "--max_steps",
            "2",
            "--output_dir",
            str(out),
        ]
        + COMMON
    )
    rows = datasets.load_from_disk(str(workdir / "tokenized_csv" / "test_split"))["validation"]
    assert len(rows) == 10
    logits = check_saved_model(str(out), rows)
    accuracy = float((logits.argmax(-1) == label_ids(out, rows, "label")).mean())
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert ("clips.csv", "accuracy") in card_splits(out)


RECORDING_SCRIPT = """
import json, os, sys

import run_classification
from audioformer.training.trainer import AudioClassificationTrainer

original = AudioClassificationTrainer.compute_loss


def compute_loss(self, model, inputs, *args, **kwargs):
    # what each rank trains on: every clip's code row (without padding) and its labels, per optimizer step
    if model.training:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        clips = [ids[b, 0, : int(mask[b].sum())].tolist() for b in range(ids.shape[0])]
        path = os.path.join(os.environ["RECORD_DIR"], f"rank{self.args.process_index}.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps({"step": self.state.global_step, "clips": clips, "labels": inputs["labels"].tolist()}))
            f.write("\\n")
    return original(self, model, inputs, *args, **kwargs)


AudioClassificationTrainer.compute_loss = compute_loss
run_classification.main()
"""


def test_ft2_multi_label_weighted_two_processes(workdir, launch):
    """`accelerate launch` with two CPU processes (gloo): FT2, multi-label, weighted sampling, on data where 4 of 20
    training clips hold the rare class. Each rank's batches are recorded: the ranks train on different clips, and
    the rare class is drawn about half the time (inverse-frequency weights), not a fifth of it."""
    out, record = workdir / "ft2_ddp", workdir / "ft2_ddp_batches"
    record.mkdir()
    script = workdir / "record_batches.py"
    script.write_text(RECORDING_SCRIPT)
    env = dict(
        os.environ,
        ACCELERATE_USE_CPU="true",
        OMP_NUM_THREADS="1",
        PYTHONPATH=REPO,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        RECORD_DIR=str(record),
    )
    max_steps = 5
    cmd = (
        launch(script)
        + data_flags(workdir, "imbalanced")
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
            str(max_steps),
            "--ddp_backend",
            "gloo",
        ]
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=str(workdir))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Process rank: 0, world size: 2" in log and "Process rank: 1, world size: 2" in log, log[-3000:]
    assert read_state(out)["global_step"] == max_steps

    batches = {}
    for rank in (0, 1):
        with open(record / f"rank{rank}.jsonl") as f:
            batches[rank] = [json.loads(line) for line in f]
        assert [b["step"] for b in batches[rank]] == list(range(max_steps))
        assert all(len(b["clips"]) == 4 for b in batches[rank])
    for step in range(max_steps):  # the ranks take different shards of the sampled sequence
        assert sorted(map(tuple, batches[0][step]["clips"])) != sorted(map(tuple, batches[1][step]["clips"]))
    rare = AudioFormerConfig.from_pretrained(out).label2id["rare"]
    drawn = [labels[rare] for rank in (0, 1) for b in batches[rank] for labels in b["labels"]]
    # 40 draws: without weighting the rare class would be exactly 20% of them over these two epochs (8 draws)
    assert len(drawn) == 40 and sum(drawn) >= 14, sum(drawn)

    results = read_results(out)
    assert {"eval_mAP", "eval_micro_f1", "eval_macro_f1"} <= set(results)
    rows = cached_codes(workdir, "validation", "imbalanced")
    logits = check_saved_model(str(out), rows)
    references = label_ids(out, rows, "labels")
    assert results["eval_mAP"] == pytest.approx(average_precision_score(references, logits, average="macro"), abs=1e-6)
    for k in (2, 3):  # the positives' weights are untouched
        assert file_digest(workdir / f"mlm_c{k}" / "model.safetensors") == DIGESTS[k]


def test_demo_prints_the_same_number_with_1_and_2_threads(tmp_path):
    """`python run_classification.py` (shortened to 3 epochs) in fresh folders with OMP_NUM_THREADS=1 and 2: the
    same codes, the same printed test accuracy."""
    printed, codes = [], []
    for threads in ("1", "2"):
        cwd = tmp_path / f"threads{threads}"
        cwd.mkdir()
        env = dict(os.environ, OMP_NUM_THREADS=threads, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        cmd = [sys.executable, os.path.join(REPO, "run_classification.py"), "--num_train_epochs", "3"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=str(cwd))
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        # nothing a newcomer cannot act on (torch warned about pin_memory without an accelerator at every epoch)
        assert "Warning:" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-4000:]
        lines = [line for line in proc.stdout.splitlines() if line.startswith("[DEMO] test_accuracy")]
        assert len(lines) == 1, proc.stdout[-2000:]
        printed.append(lines[0])
        cache = cwd / "demo_data" / "tokenized"
        codes.append([list(datasets.load_from_disk(str(cache))[s]["input_ids"]) for s in ("train", "validation")])
        codes[-1].append(list(datasets.load_from_disk(str(cache / "test_split"))["validation"]["input_ids"]))
    assert codes[0] == codes[1]
    assert printed[0] == printed[1]


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
    assert not run_classification.is_demo(["configs/ft_as20k_ft1.yaml"])


def test_test_split_must_not_be_the_validation_split(workdir):
    with pytest.raises(ValueError, match="selected on its test split"):
        run_classification.main(
            data_flags(workdir) + COMMON + ["--output_dir", str(workdir / "x"), "--test_split_name", "validation"]
        )
    with pytest.raises(ValueError, match="Test split .*No evaluation split 'missing'"):
        run_classification.main(
            data_flags(workdir)
            + COMMON
            + [
                "--output_dir",
                str(workdir / "x"),
                "--test_split_name",
                "missing",
                "--config_overrides",
                TINY_OVERRIDES,
            ]
        )
