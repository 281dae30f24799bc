"""
`config.classifier_batch_norm`: the classification head standardises its pooled features (BatchNorm without affine
parameters) before the classifier. Checked against the formula written out; the paper's head is unchanged without it.
"""

import json

import pytest
import torch
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from audioformer.modeling_audioformer import AudioFormerForAudioClassification, AudioFormerForMaskedLM
from audioformer.modeling_audioformer.export_onnx import example_batch, export_onnx


LENGTHS = [9, 5, 12, 7]
EPS = 1e-5


def build(tiny_config, seed=0, **kwargs):
    torch.manual_seed(seed)
    config = tiny_config(num_labels=3, problem_type="multi_label_classification", **kwargs)
    return AudioFormerForAudioClassification(config)


def pooled_and_logits(model, input_ids, attention_mask):
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    return out.pooled_output, out.logits


def naive_pool(model, input_ids, attention_mask):
    """The mean of the last hidden states over the real positions, clip by clip."""
    hidden = model.roformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return torch.stack([hidden[i, : int(m.sum())].mean(dim=0) for i, m in enumerate(attention_mask)])


def test_training_standardises_by_the_batch_and_updates_running_statistics(tiny_config):
    model = build(tiny_config, classifier_batch_norm=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.train()
    input_ids, mask = example_batch(model.config, LENGTHS, seed=1)
    pooled, logits = pooled_and_logits(model, input_ids, mask)
    with torch.no_grad():
        x = naive_pool(model, input_ids, mask)
    # pooled_output is the plain mean (FT2 and the embeddings read it); only the classifier's input is standardised
    torch.testing.assert_close(pooled, x, atol=1e-5, rtol=1e-5)
    mean, biased_var = x.mean(dim=0), x.var(dim=0, unbiased=False)
    expected = model.classifier((x - mean) / torch.sqrt(biased_var + EPS))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-4)
    # running statistics: momentum 0.1 from (0, 1), the variance unbiased (as torch's BatchNorm)
    norm = model.pooled_norm
    torch.testing.assert_close(norm.running_mean, 0.1 * mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * x.var(dim=0, unbiased=True), atol=1e-6, rtol=1e-5)
    # at inference the running statistics, whatever the batch
    model.eval()
    _, logits = pooled_and_logits(model, input_ids, mask)
    expected = model.classifier((x - norm.running_mean) / torch.sqrt(norm.running_var + EPS))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-4)
    _, alone = pooled_and_logits(model, input_ids[:1], mask[:1])
    torch.testing.assert_close(alone, logits[:1], atol=1e-5, rtol=1e-4)


def test_a_batch_of_one_clip_trains_on_the_running_statistics(tiny_config):
    model = build(tiny_config, classifier_batch_norm=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    input_ids, mask = example_batch(model.config, [8], seed=2)
    model.train()  # nn.BatchNorm1d itself refuses a batch of one while training
    out = model(input_ids=input_ids, attention_mask=mask, labels=torch.tensor([[1.0, 0.0, 1.0]]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.classifier.weight.grad.abs().sum() > 0
    assert torch.equal(model.pooled_norm.running_mean, torch.zeros(model.config.hidden_size))
    expected = model.classifier(out.pooled_output / (1 + EPS) ** 0.5)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-4)


def test_without_it_the_head_is_the_papers(tiny_config, tmp_path):
    plain = build(tiny_config).eval()
    assert not hasattr(plain, "pooled_norm")
    input_ids, mask = example_batch(plain.config, LENGTHS, seed=3)
    pooled, logits = pooled_and_logits(plain, input_ids, mask)
    torch.testing.assert_close(logits, plain.classifier(pooled), atol=0, rtol=0)
    plain.config.save_pretrained(tmp_path)  # saved exactly as before the option existed
    assert "classifier_batch_norm" not in json.loads((tmp_path / "config.json").read_text())


def test_round_trip_keeps_the_running_statistics(tiny_config, tmp_path):
    model = build(tiny_config, classifier_batch_norm=True)
    input_ids, mask = example_batch(model.config, LENGTHS, seed=4)
    model.train()
    for _ in range(3):
        model(input_ids=input_ids, attention_mask=mask)
    model.eval()
    _, logits = pooled_and_logits(model, input_ids, mask)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["classifier_batch_norm"] is True
    loaded = AudioFormerForAudioClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.pooled_norm.running_var, model.pooled_norm.running_var, atol=0, rtol=0)
    _, again = pooled_and_logits(loaded, input_ids, mask)
    torch.testing.assert_close(again, logits, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fused", [False, True])
def test_from_a_pretraining_checkpoint_the_statistics_start_at_zero_and_one(tiny_config, tmp_path, fused):
    extra = dict(input_codebooks=[0, 1, 2, 3]) if fused else {}
    torch.manual_seed(0)
    AudioFormerForMaskedLM(tiny_config(**extra)).save_pretrained(tmp_path)
    model = AudioFormerForAudioClassification.from_pretrained(
        tmp_path, num_labels=3, problem_type="multi_label_classification", classifier_batch_norm=True
    )
    hidden = model.config.hidden_size
    assert torch.equal(model.pooled_norm.running_mean, torch.zeros(hidden))
    assert torch.equal(model.pooled_norm.running_var, torch.ones(hidden))
    input_ids, mask = example_batch(model.config, LENGTHS, seed=5)
    model.eval()
    pooled, logits = pooled_and_logits(model, input_ids, mask)
    with torch.no_grad():
        torch.testing.assert_close(pooled, naive_pool(model, input_ids, mask), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, model.classifier(pooled / (1 + EPS) ** 0.5), atol=1e-5, rtol=1e-4)


def test_remote_code_and_onnx_export_read_the_statistics(tiny_config, tmp_path):
    """A standardised head through the folder's own code (`trust_remote_code`) and the exported graph."""
    model = build(tiny_config, classifier_batch_norm=True)
    input_ids, mask = example_batch(model.config, LENGTHS, seed=6)
    model.train()
    model(input_ids=input_ids, attention_mask=mask)  # statistics other than (0, 1)
    model.eval()
    _, logits = pooled_and_logits(model, input_ids, mask)
    model.register_for_auto_class("AutoModelForAudioClassification")
    model.save_pretrained(tmp_path / "model")
    remote_class = get_class_from_dynamic_module(
        "modeling_audioformer.AudioFormerForAudioClassification", str(tmp_path / "model")
    )
    remote = remote_class.from_pretrained(tmp_path / "model").eval()
    _, again = pooled_and_logits(remote, input_ids, mask)
    torch.testing.assert_close(again, logits, atol=1e-5, rtol=1e-5)
    pytest.importorskip("onnxruntime")
    report = export_onnx(str(tmp_path / "model"), str(tmp_path / "onnx"), encoder=False)
    assert report["model.onnx"] < 1e-4
