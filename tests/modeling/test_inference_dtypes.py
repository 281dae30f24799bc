"""Serving precisions (`long_audio.cast_for_inference`): bfloat16 and int8 against float32, through the model, the
pipeline, the Endpoints handler, the Space's loader and the HEAR API; clear errors for what a machine cannot run.

Tolerances, as a share of the float32 logits' range (max - min over the batch) on tiny random models: bfloat16
(8-bit mantissa) 2%, int8 (dynamic per-tensor quantization of every Linear's input, 7-bit on x86) 8%. Measured:
about 0.5% and 1-3%; a wrong path (a layer skipped, weights not cast) is off by tens of percent."""

import copy
import importlib.util
import shutil

import numpy as np
import pytest
import torch
from transformers import pipeline

import audioformer.tokenization  # noqa: F401  registers the Auto classes
from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification, long_audio
from audioformer.modeling_audioformer.long_audio import (
    AudioFormerAudioClassificationPipeline,
    bfloat16_is_native,
    cast_for_inference,
)
from audioformer.tokenization import AudioFormerFeatureExtractor


TOLERANCE = {"bfloat16": 0.02, "int8": 0.08}
LABELS = ["dog", "rain", "siren", "speech", "wind"]
needs_native_bf16 = pytest.mark.skipif(
    not bfloat16_is_native(torch.device("cpu")), reason="this CPU has no native bfloat16 (AVX-512 BF16 / AMX)"
)
DTYPES = [pytest.param("bfloat16", marks=needs_native_bf16), "int8"]


def tiny_config(**kwargs):
    return AudioFormerConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=256,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        **kwargs,
    )


def classifier(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = AudioFormerForAudioClassification(tiny_config(**kwargs)).eval()
    torch.nn.init.normal_(model.classifier.weight, std=1.0)  # logits spread over several units
    return model


def padded_batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 1027, (3, 120), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 80:] = 0
    attention_mask[2, 30:] = 0
    input_ids[attention_mask == 0] = 1
    return input_ids, attention_mask


def assert_within(values, reference, dtype):
    values, reference = torch.as_tensor(values).float(), torch.as_tensor(reference).float()
    scale = (reference.max() - reference.min()).item()
    difference = (values - reference).abs().max().item()
    assert difference <= TOLERANCE[dtype] * scale, f"{dtype}: max |diff| {difference:.4f}, range {scale:.3f}"
    return difference


@pytest.mark.parametrize("attention", ["sdpa_per_clip", "sdpa", "eager"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_dtype_is_close_to_float32(dtype, attention):
    model = classifier(attn_implementation=attention)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        reference = model(input_ids, attention_mask=attention_mask).logits
        served = cast_for_inference(copy.deepcopy(model), dtype)
        logits = served(input_ids, attention_mask=attention_mask).logits
    difference = assert_within(logits, reference, dtype)
    assert difference > 0  # the precision did change: the path under test ran
    if dtype == "int8":
        assert type(served.roformer.encoder.layer[0].intermediate.dense) is not torch.nn.Linear
    else:
        assert served.roformer.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16


def test_float32_is_the_model_as_it_is():
    model = classifier()
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        reference = model(input_ids, attention_mask=attention_mask).logits
        logits = cast_for_inference(model, "float32")(input_ids, attention_mask=attention_mask).logits
    torch.testing.assert_close(logits, reference, rtol=0, atol=0)


def test_an_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match=r"dtype must be one of \('float32', 'bfloat16', 'int8'\), got 'float16'"):
        cast_for_inference(classifier(), "float16")


def test_bfloat16_without_native_support_is_refused(monkeypatch):
    monkeypatch.setattr(long_audio, "bfloat16_is_native", lambda device: False)
    with pytest.raises(ValueError, match="native bfloat16.*AVX-512 BF16 nor AMX.*emulated"):
        cast_for_inference(classifier(), "bfloat16")


def test_int8_off_the_cpu_is_refused():
    model = classifier().to("meta")
    with pytest.raises(ValueError, match="int8.*CPU only.*meta"):
        cast_for_inference(model, "int8")


def test_int8_without_quantized_kernels_is_refused(monkeypatch):
    monkeypatch.setattr(long_audio, "int8_engine", lambda: None)
    with pytest.raises(ValueError, match="quantized CPU kernels"):
        cast_for_inference(classifier(), "int8")


# ---- the serving paths -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_codec_dir):
    path = tmp_path_factory.mktemp("dtypes") / "classifier"
    classifier(problem_type="multi_label_classification").save_pretrained(path)
    AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0).save_pretrained(path)
    return str(path)


def wav_at(sampling_rate, seconds, seed=0):
    t = np.arange(int(sampling_rate * seconds)) / sampling_rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 330 * t * (1 + t)) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def pipeline_scores(folder, wav, **kwargs):
    classify = pipeline(
        "audio-classification", model=folder, pipeline_class=AudioFormerAudioClassificationPipeline, **kwargs
    )
    result = classify({"raw": wav, "sampling_rate": 16000}, top_k=None, function_to_apply="none")
    return classify, [{r["label"]: r["score"] for r in result}[label] for label in LABELS]


@pytest.mark.parametrize("dtype", DTYPES)
def test_pipeline_inference_dtype(folder, dtype):
    wav = wav_at(16000, 1.0)
    _, reference = pipeline_scores(folder, wav)
    classify, scores = pipeline_scores(folder, wav, inference_dtype=dtype)
    assert_within(scores, reference, dtype)
    assert scores != reference
    layer = classify.model.roformer.encoder.layer[0]
    assert (
        (type(layer.output.dense) is not torch.nn.Linear)
        if dtype == "int8"
        else classify.model.dtype == torch.bfloat16
    )


def test_pipeline_refuses_an_unknown_dtype(folder):
    with pytest.raises(ValueError, match="dtype must be one of"):
        pipeline("audio-classification", model=folder, pipeline_class=AudioFormerAudioClassificationPipeline,
                 inference_dtype="int4")  # fmt: skip


def load_handler(folder, tmp_path):
    from audioformer.model_cards.card import write_model_card

    served = tmp_path / "served"
    shutil.copytree(folder, served)
    write_model_card(str(served), task="audio-classification")
    spec = importlib.util.spec_from_file_location("endpoint_handler", served / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EndpointHandler, str(served)


@pytest.mark.parametrize("dtype", DTYPES)
def test_endpoint_handler_dtype_argument_and_environment(folder, tmp_path, monkeypatch, dtype):
    handler_class, served = load_handler(folder, tmp_path)
    wav = wav_at(16000, 1.0)
    request = {"inputs": wav.tolist(), "parameters": {"sampling_rate": 16000, "top_k": 5, "function_to_apply": "none"}}

    def scores(handler):
        return [{r["label"]: r["score"] for r in handler(request)}[label] for label in LABELS]

    monkeypatch.delenv("AUDIOFORMER_DTYPE", raising=False)
    reference = scores(handler_class(served))
    by_argument = scores(handler_class(served, dtype=dtype))
    assert_within(by_argument, reference, dtype)
    assert by_argument != reference
    monkeypatch.setenv("AUDIOFORMER_DTYPE", dtype)
    np.testing.assert_allclose(scores(handler_class(served)), by_argument, rtol=0, atol=1e-6)
    monkeypatch.setenv("AUDIOFORMER_DTYPE", "fp8")
    with pytest.raises(ValueError, match="dtype must be one of"):
        handler_class(served)


def test_space_loads_its_model_in_the_dtype(folder):
    from audioformer.model_cards import space

    checkpoint = space.load_checkpoint(folder, dtype="int8")
    assert type(checkpoint.model.roformer.encoder.layer[0].attention.self.key) is not torch.nn.Linear
    with pytest.raises(SystemExit):
        space.main([folder, "--dtype", "float16"])  # argparse: not one of the choices


def test_hear_api_dtype(folder):
    import audioformer_hear

    audio = torch.from_numpy(wav_at(16000, 1.0))[None].repeat(2, 1)
    reference = audioformer_hear.get_scene_embeddings(audio, audioformer_hear.load_model(folder, sample_rate=16000))
    model = audioformer_hear.load_model(folder, sample_rate=16000, dtype="int8")
    embeddings = audioformer_hear.get_scene_embeddings(audio, model)
    assert embeddings.dtype == torch.float32
    assert_within(embeddings, reference, "int8")
    assert not torch.equal(embeddings, reference)
