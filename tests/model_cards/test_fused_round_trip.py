"""
A fused checkpoint (`input_codebooks=[0, 1, 2, 3]`) through everything that takes a checkpoint: save/load with the
Auto classes, the published remote code, the pipeline (long audio too), ONNX export, HEAR, conversion, the Space's
masked-code page and the model card.
"""

import numpy as np
import pytest
import torch
from transformers import AutoModelForAudioClassification, pipeline
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from audioformer.model_cards.card import write_model_card
from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
)
from audioformer.modeling_audioformer.long_audio import AudioFormerAudioClassificationPipeline, OnnxAudioClassifier
from audioformer.training.tiny_codec import TINY_MODEL


LABELS = ["dog", "rain", "siren"]


def audio(seconds, seed=0, rate=24000):
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def fused_folder(tmp_path_factory, tiny_feature_extractor):
    path = tmp_path_factory.mktemp("fused_classifier")
    config = AudioFormerConfig(
        **TINY_MODEL,
        input_codebooks=[0, 1, 2, 3],
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        problem_type="single_label_classification",
    )
    torch.manual_seed(0)
    model = AudioFormerForAudioClassification(config)
    model.register_for_auto_class("AutoModelForAudioClassification")
    model.save_pretrained(path)
    tiny_feature_extractor.save_pretrained(path)
    write_model_card(str(path), task="audio-classification", metrics={"eval_accuracy": 0.5})
    return path


def reference_logits(folder, fe, wave):
    model = AudioFormerForAudioClassification.from_pretrained(folder).eval()
    inputs = fe(wave, sampling_rate=24000, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits, inputs


def test_auto_classes_and_remote_code_load_it(fused_folder, tiny_feature_extractor):
    wave = audio(1.0)
    logits, inputs = reference_logits(fused_folder, tiny_feature_extractor, wave)
    assert inputs["input_ids"].shape[1] == 4
    auto = AutoModelForAudioClassification.from_pretrained(fused_folder).eval()
    assert auto.config.input_codebooks == [0, 1, 2, 3]
    # the folder's own copy of the code (what `trust_remote_code=True` users run), not the installed project
    remote_class = get_class_from_dynamic_module(
        "modeling_audioformer.AudioFormerForAudioClassification", str(fused_folder)
    )
    assert remote_class.__module__.startswith("transformers_modules.")
    remote = remote_class.from_pretrained(fused_folder).eval()
    assert remote.roformer.embeddings.word_embeddings.weight.shape[0] == 4 * 1028
    with torch.no_grad():
        torch.testing.assert_close(auto(**inputs).logits, logits)
        torch.testing.assert_close(remote(**inputs).logits, logits)


def test_pipeline_and_long_audio(fused_folder, tiny_feature_extractor):
    wave = audio(1.0, seed=1)
    logits, _ = reference_logits(fused_folder, tiny_feature_extractor, wave)
    classifier = pipeline(
        "audio-classification", model=str(fused_folder), pipeline_class=AudioFormerAudioClassificationPipeline
    )
    result = classifier({"raw": wave, "sampling_rate": 24000}, top_k=3)
    scores = {r["label"]: r["score"] for r in result}
    expected = logits.softmax(-1)[0]
    assert scores == pytest.approx({label: float(expected[i]) for i, label in enumerate(LABELS)}, abs=1e-5)
    long_result = classifier({"raw": audio(5.0, seed=2), "sampling_rate": 24000}, long_audio="mean", top_k=3)
    assert sum(r["score"] for r in long_result) == pytest.approx(1.0, abs=1e-4)


def test_onnx_export_takes_all_codebooks(fused_folder, tiny_feature_extractor, tmp_path):
    pytest.importorskip("onnxruntime")
    from audioformer.modeling_audioformer.export_onnx import export_onnx

    report = export_onnx(str(fused_folder), str(tmp_path), encoder=False)
    assert report["model.onnx"] < 1e-4
    wave = audio(1.0, seed=3)
    logits, inputs = reference_logits(fused_folder, tiny_feature_extractor, wave)
    served = OnnxAudioClassifier(str(tmp_path / "model.onnx"), AudioFormerConfig.from_pretrained(fused_folder))
    torch.testing.assert_close(served(**inputs).logits, logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="num_codebooks, seq_len"):
        served(inputs["input_ids"][:, 0])


def test_hear_embeddings(fused_folder):
    from audioformer_hear import get_scene_embeddings, get_timestamp_embeddings, load_model

    model = load_model(str(fused_folder), sample_rate=16000)
    sounds = torch.from_numpy(np.stack([audio(1.0, 4, 16000), audio(1.0, 5, 16000)]))
    scene = get_scene_embeddings(sounds, model)
    frames, timestamps = get_timestamp_embeddings(sounds, model)
    assert scene.shape == (2, 32) and frames.shape[:2] == timestamps.shape and frames.shape[-1] == 32
    assert torch.isfinite(scene).all()


def test_conversion_keeps_it_fused(fused_folder):
    from audioformer.modeling_audioformer.convert_checkpoint import convert

    model, report = convert(str(fused_folder), task="classification")
    assert model.config.input_codebooks == [0, 1, 2, 3] and not report.missing and not report.skipped


def test_card_says_which_codebooks_are_read(fused_folder):
    card = (fused_folder / "README.md").read_text()
    assert "codebook rows C1 + C2 + C3 + C4 at once" in card
    assert "| input_codebooks | [0, 1, 2, 3] |" in card


def test_space_masks_whole_frames(tmp_path, tiny_feature_extractor):
    from audioformer.model_cards.space import describe, load_checkpoint, restore_masked_codes

    torch.manual_seed(0)
    AudioFormerForMaskedLM(AudioFormerConfig(**TINY_MODEL, input_codebooks=[0, 1, 2, 3])).save_pretrained(tmp_path)
    tiny_feature_extractor.save_pretrained(tmp_path)
    checkpoint = load_checkpoint(str(tmp_path))
    seen = []
    forward = checkpoint.model.forward
    checkpoint.model.forward = lambda input_ids, **kwargs: seen.append(input_ids) or forward(input_ids, **kwargs)
    result = restore_masked_codes(checkpoint, audio(1.0, seed=6), 24000)
    assert result.codebook_row == 0 and result.num_masked > 0
    assert (result.predicted[~result.masked] == -1).all()
    (ids,) = seen
    masked = ids[0] == 1027  # (K, L): every frame masked in C1 is masked in every codebook
    assert masked.sum() == 4 * result.num_masked and (masked.all(0) == masked.any(0)).all()
    assert "codebooks C1 + C2 + C3 + C4 (summed per frame)" in describe(checkpoint)
