"""End to end: run_classification.py with the small-data flags (masking, layer-wise LR decay, frozen backbone), a
resumed augmented run against an uninterrupted one, and the embedding export tool."""

import os

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import run_classification
from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerModel,
)
from audioformer.training import export_embeddings
from audioformer.training.collators import pad_code_rows


TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=96
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Tiny codec, a multi-label demo audiofolder (20 + 10 clips of 1 s) and two tiny MLM checkpoints (C1, C2)."""
    from audioformer.training.demo_data import write_demo_audiofolder
    from audioformer.training.tiny_codec import build_tiny_feature_extractor

    root = tmp_path_factory.mktemp("small_data")
    build_tiny_feature_extractor(root / "codec", seed=0, max_duration=1.0)
    write_demo_audiofolder(
        str(root / "audio"), num_train=20, num_validation=10, seed=0, multi_label=True, duration=1.0
    )
    for k in range(2):
        torch.manual_seed(20 + k)
        AudioFormerForMaskedLM(AudioFormerConfig(codebook_index=k, **TINY)).save_pretrained(root / f"mlm_c{k + 1}")
    return root


def flags(root, output_dir, *extra):
    return [
        "--data_dir", str(root / "audio"), "--feature_extractor_name", str(root / "codec"),
        "--tokenized_cache_dir", str(root / "tokenized"), "--label_column_name", "labels",
        "--model_name_or_path", str(root / "mlm_c1"), "--do_train", "--do_eval", "--use_cpu",
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--report_to", "none",
        "--disable_tqdm", "true", "--seed", "0", "--dataloader_num_workers", "0", "--output_dir", str(output_dir),
        *extra,
    ]  # fmt: skip


def weights(output_dir):
    return load_file(os.path.join(output_dir, "model.safetensors"))


def test_augmented_run_resumes_exactly(workdir):
    small_data = ["--code_mask_probability", "0.2", "--time_mask_probability", "0.3", "--time_mask_length", "5",
                  "--layerwise_lr_decay", "0.7", "--num_train_epochs", "2", "--save_strategy", "steps",
                  "--save_steps", "3"]  # fmt: skip
    full = workdir / "full"
    metrics = run_classification.main(flags(workdir, full, *small_data))
    assert 0.0 < metrics["eval_mAP"] <= 1.0
    # A run killed in its first epoch and resumed from its checkpoint (the uninterrupted run's first one): the
    # masks of the remaining batches must be those the uninterrupted run drew.
    checkpoint = full / "checkpoint-3"  # an epoch is 5 steps of 4 clips
    assert checkpoint.is_dir()
    resumed = workdir / "resumed"
    run_classification.main(flags(workdir, resumed, *small_data, "--resume_from_checkpoint", str(checkpoint)))
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # ... and the masking changed the run: without it the weights differ.
    plain = workdir / "plain"
    run_classification.main(flags(workdir, plain, "--layerwise_lr_decay", "0.7", "--num_train_epochs", "2"))
    assert not torch.equal(weights(plain)["classifier.weight"], a["classifier.weight"])


def test_frozen_backbone_trains_only_the_classifier(workdir):
    out = workdir / "probe"
    run_classification.main(flags(workdir, out, "--freeze_backbone", "--num_train_epochs", "2"))
    trained, pretrained = weights(out), load_file(workdir / "mlm_c1" / "model.safetensors")
    backbone = [k for k in trained if k.startswith("roformer.")]
    assert backbone and all(torch.equal(trained[k], pretrained[k]) for k in backbone)
    assert "classifier.weight" in trained and "classifier.weight" not in pretrained


def test_export_embeddings_matches_the_model_and_concatenates_codebooks(workdir):
    codes = workdir / "tokenized"
    if not codes.is_dir():  # when this test runs alone
        run_classification.main(flags(workdir, workdir / "tokenize_only", "--max_steps", "1"))
    out = workdir / "embeddings"
    export_embeddings.main(
        [
            "--model_name_or_path",
            str(workdir / "mlm_c1"),
            str(workdir / "mlm_c2"),
            "--tokenized_dataset",
            str(codes),
            "--output_dir",
            str(out),
            "--batch_size",
            "3",
        ]  # fmt: skip
    )
    exported = datasets.load_from_disk(str(out))
    source = datasets.load_from_disk(str(codes))
    assert set(exported) == set(source)
    embeddings = exported["validation"].with_format("numpy")[:]["embedding"]
    assert embeddings.shape == (len(source["validation"]), 64) and embeddings.dtype == np.float32
    assert exported["validation"]["labels"] == source["validation"]["labels"]  # other columns kept, in order
    # Each half is the model's masked mean of its own codebook row (padding excluded: a batch of one clip).
    for k, name in enumerate(("mlm_c1", "mlm_c2")):
        model = AudioFormerModel.from_pretrained(workdir / name).eval()
        for i in (0, 7):
            batch = pad_code_rows([source["validation"][i]], codebook_index=k)
            with torch.no_grad():
                expected = model(**batch).last_hidden_state.mean(dim=1)[0].numpy()
            np.testing.assert_allclose(embeddings[i, 32 * k : 32 * (k + 1)], expected, atol=1e-5)
    with pytest.raises(ValueError, match="codebook rows"):
        export_embeddings.load_models([str(workdir / "mlm_c1"), str(workdir / "mlm_c1")])


def test_mixup_trains_and_changes_the_run(workdir):
    mixed, plain = workdir / "mixup", workdir / "mixup_plain"
    metrics = run_classification.main(flags(workdir, mixed, "--mixup_alpha", "0.4", "--max_steps", "2"))
    assert 0.0 < metrics["eval_mAP"] <= 1.0
    run_classification.main(flags(workdir, plain, "--max_steps", "2"))
    assert not torch.equal(weights(plain)["classifier.weight"], weights(mixed)["classifier.weight"])
    with pytest.raises(ValueError, match="--mixup_alpha"):
        run_classification.main(flags(workdir, workdir / "bad", "--mixup_alpha", "-1"))
    with pytest.raises(ValueError, match="FT1"):
        run_classification.main(
            flags(workdir, workdir / "bad2", "--mixup_alpha", "0.4", "--mpc_positive_models", str(workdir / "mlm_c2"))
        )


def test_linear_probe_then_fine_tuning_keeps_the_standardised_head(workdir):
    """LP-FT: a frozen probe with standardised features, then every weight trained from it (no flag repeated)."""
    probe, tuned = workdir / "lp_bn", workdir / "lp_ft"
    run_classification.main(
        flags(
            workdir, probe, "--freeze_backbone", "--classifier_batch_norm", "--loss", "bce", "--num_train_epochs", "2"
        )
    )
    trained, pretrained = weights(probe), load_file(workdir / "mlm_c1" / "model.safetensors")
    assert all(torch.equal(trained[k], pretrained[k]) for k in trained if k.startswith("roformer."))
    # the running statistics were learnt from the frozen features: no longer torch's (0, 1)
    assert not torch.equal(trained["pooled_norm.running_mean"], torch.zeros_like(trained["pooled_norm.running_mean"]))
    assert not torch.equal(trained["pooled_norm.running_var"], torch.ones_like(trained["pooled_norm.running_var"]))
    flag = flags(workdir, tuned, "--num_train_epochs", "1")
    flag[flag.index("--model_name_or_path") + 1] = str(probe)
    metrics = run_classification.main(flag)
    assert 0.0 < metrics["eval_mAP"] <= 1.0
    second = weights(tuned)
    assert AudioFormerForAudioClassification.from_pretrained(tuned).config.classifier_batch_norm
    assert not torch.equal(second["roformer.encoder.layer.0.attention.self.query.weight"],
                           trained["roformer.encoder.layer.0.attention.self.query.weight"])  # fmt: skip
    assert not torch.equal(second["pooled_norm.running_mean"], trained["pooled_norm.running_mean"])
