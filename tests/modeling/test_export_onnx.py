"""`export_onnx`: the ONNX graphs (codes -> logits, codes -> hidden states) against the eager model with onnxruntime,
padded and unpadded, at batch sizes and lengths other than the traced ones; the ONNX path through
`classify_long_audio` and the Endpoints handler."""

import importlib.util
import shutil

import numpy as np
import pytest
import torch

import audioformer.tokenization  # noqa: F401  registers the Auto classes
from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
)
from audioformer.modeling_audioformer.export_onnx import example_batch, export_onnx, main
from audioformer.modeling_audioformer.long_audio import OnnxAudioClassifier, classify_long_audio
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import TINY_MODEL


onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

LABELS = ["dog", "rain", "siren"]


def tiny_config(**kwargs):
    return AudioFormerConfig(**{**TINY_MODEL, "max_position_embeddings": 128, **kwargs})


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_codec_dir):
    root = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    config = tiny_config(
        num_labels=len(LABELS),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = AudioFormerForAudioClassification(config)
    torch.nn.init.normal_(model.classifier.weight, std=2.0)
    model.save_pretrained(root / "checkpoint")
    AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0).save_pretrained(
        root / "checkpoint"
    )
    report = export_onnx(str(root / "checkpoint"), str(root / "onnx"))
    eager = AudioFormerForAudioClassification.from_pretrained(root / "checkpoint").eval()
    return root, report, eager


def run(path, input_ids, attention_mask, output):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([output], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})[0]


def test_the_export_checks_itself(exported):
    _, report, _ = exported
    assert set(report) == {"model.onnx", "encoder.onnx"}
    assert all(0 <= difference < 1e-4 for difference in report.values())


@pytest.mark.parametrize(
    "lengths", [[40, 7, 23, 2, 128], [64, 64], [2, 2], [100]], ids=["padded", "unpadded", "shortest", "one"]
)
def test_logits_and_hidden_states_match_eager(exported, lengths):
    root, _, eager = exported
    input_ids, attention_mask = example_batch(eager.config, lengths, seed=len(lengths))
    with torch.no_grad():
        expected = eager(input_ids, attention_mask=attention_mask)
        hidden = eager.roformer(input_ids, attention_mask=attention_mask).last_hidden_state
    logits = run(root / "onnx" / "model.onnx", input_ids, attention_mask, "logits")
    np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=1e-4, atol=1e-5)
    states = run(root / "onnx" / "encoder.onnx", input_ids, attention_mask, "last_hidden_state")
    assert states.shape == (len(lengths), max(lengths), eager.config.hidden_size)
    np.testing.assert_allclose(states, hidden.numpy(), rtol=1e-4, atol=1e-5)
    assert np.all(states[attention_mask.numpy() == 0] == 0)  # padding positions are 0, as in eager


def test_batch_and_length_are_dynamic_in_the_graph(exported):
    root, _, _ = exported
    graph = onnx.load(str(root / "onnx" / "model.onnx")).graph
    for tensor in graph.input:
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param != "" for d in dims] == [True, True], tensor
    assert (root / "onnx" / "config.json").is_file()


def test_a_masked_lm_checkpoint_exports_its_vocabulary_logits(tmp_path, capsys):
    torch.manual_seed(0)
    model = AudioFormerForMaskedLM(tiny_config()).eval()
    model.save_pretrained(tmp_path / "mlm")
    main([str(tmp_path / "mlm"), str(tmp_path / "out"), "--no_encoder"])
    assert "model.onnx: max |ONNX - eager|" in capsys.readouterr().out
    assert not (tmp_path / "out" / "encoder.onnx").exists()
    input_ids, attention_mask = example_batch(model.config, [9, 30, 4], seed=3)
    logits = run(tmp_path / "out" / "model.onnx", input_ids, attention_mask, "logits")
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).logits
    mask = attention_mask.bool().numpy()  # only real positions carry meaning (the head is not zeroed at padding)
    np.testing.assert_allclose(logits[mask], expected.numpy()[mask], rtol=1e-4, atol=1e-4)


def wav_at(sampling_rate, seconds, seed=0):
    t = np.arange(int(sampling_rate * seconds)) / sampling_rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 330 * t * (1 + t)) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def test_classify_long_audio_with_the_onnx_graph(exported):
    root, _, eager = exported
    fe = AudioFormerFeatureExtractor.from_pretrained(root / "checkpoint")
    graph = OnnxAudioClassifier(str(root / "onnx" / "model.onnx"), eager.config)
    wav = wav_at(16000, 3.3)
    for how in ("truncate", "max"):
        expected = classify_long_audio(eager, fe, wav, 16000, long_audio=how, batch_size=2)
        got = classify_long_audio(graph, fe, wav, 16000, long_audio=how, batch_size=2)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_endpoint_handler_runs_the_onnx_graph(exported, tmp_path, monkeypatch):
    from audioformer.model_cards.card import write_model_card

    root, _, _ = exported
    served = tmp_path / "served"
    shutil.copytree(root / "checkpoint", served)
    shutil.copytree(root / "onnx", served / "onnx")
    write_model_card(str(served), task="audio-classification")
    spec = importlib.util.spec_from_file_location("endpoint_handler", served / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wav = wav_at(16000, 1.0)
    request = {"inputs": wav.tolist(), "parameters": {"sampling_rate": 16000, "top_k": 3}}
    monkeypatch.delenv("AUDIOFORMER_ONNX", raising=False)
    expected = module.EndpointHandler(str(served))(request)
    monkeypatch.setenv("AUDIOFORMER_ONNX", "onnx/model.onnx")
    handler = module.EndpointHandler(str(served))
    assert type(handler.model).__name__ == "OnnxAudioClassifier"
    got = handler(request)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], rtol=1e-4, atol=1e-6)
