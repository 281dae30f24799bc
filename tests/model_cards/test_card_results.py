"""The model card's results (validation vs. test, with their split names) and what it says about the scores."""

import numpy as np
import pytest
import soundfile as sf
import torch
from huggingface_hub import ModelCard

import audioformer.modeling_audioformer  # noqa: F401
from audioformer.model_cards.card import write_model_card
from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification
from audioformer.modeling_audioformer.long_audio import score_description
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import TINY_MODEL


LABELS = ["dog", "rain", "siren"]
THRESHOLDS = [1.5, -0.75, 0.25]


def classifier(path, codec_dir, thresholds=None):
    config = AudioFormerConfig(
        **TINY_MODEL,
        problem_type="multi_label_classification",
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    model = AudioFormerForAudioClassification(config)
    if thresholds is not None:  # calibrated as run_classification.py does it
        model.fold_decision_thresholds(thresholds)
    model.save_pretrained(path)
    AudioFormerFeatureExtractor(codec_name_or_path=codec_dir, max_duration=1.0).save_pretrained(path)
    return path


def test_validation_and_test_results_carry_their_split(tmp_path, tiny_codec_dir):
    folder = classifier(tmp_path / "out", tiny_codec_dir)
    write_model_card(
        str(folder),
        task="audio-classification",
        metrics={"eval_mAP": 0.45, "eval_micro_f1": 0.5, "test_mAP": 0.41, "test_micro_f1": 0.47, "test_runtime": 2.0},
        split_names={"eval": "train (10% seeded hold-out)", "test": "eval"},
    )
    card = ModelCard.load(folder / "README.md")
    results = card.data.to_dict()["model-index"][0]["results"]
    found = {(r["dataset"]["split"], m["type"]): m["value"] for r in results for m in r["metrics"]}
    assert found == {
        ("eval", "mAP"): 0.41,
        ("eval", "micro_f1"): 0.47,
        ("train (10% seeded hold-out)", "mAP"): 0.45,
        ("train (10% seeded hold-out)", "micro_f1"): 0.5,
    }
    assert results[0]["dataset"]["split"] == "eval"  # the test results come first
    assert "| metric | test (`eval`) | validation (`train (10% seeded hold-out)`) |" in card.text
    assert "| mAP | 0.41 | 0.45 |" in card.text
    assert "evaluated once, at the end, with the selected model" in card.text


def test_validation_only_results_keep_the_default_split(tmp_path, tiny_codec_dir):
    folder = classifier(tmp_path / "out", tiny_codec_dir)
    write_model_card(str(folder), task="audio-classification", metrics={"eval_mAP": 0.3})
    results = ModelCard.load(folder / "README.md").data.to_dict()["model-index"][0]["results"]
    assert [(r["dataset"]["split"], r["metrics"][0]["value"]) for r in results] == [("validation", 0.3)]


@pytest.mark.parametrize("thresholds", [None, THRESHOLDS])
def test_card_says_what_scores_mean_and_widget_uses_thresholds(tmp_path, tiny_codec_dir, thresholds):
    folder = classifier(tmp_path / "out", tiny_codec_dir, thresholds)
    write_model_card(str(folder), task="audio-classification")
    card = ModelCard.load(folder / "README.md")
    config = AudioFormerConfig.from_pretrained(folder)
    assert "## What the scores mean\n\n" + score_description(config) in card.text

    # The widget's pre-computed output, against the model's logits on example.wav turned into scores here.
    wav, sr = sf.read(folder / "example.wav", dtype="float32")
    fe = AudioFormerFeatureExtractor.from_pretrained(folder)
    model = AudioFormerForAudioClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**fe(wav, sampling_rate=sr)).logits[0].double().numpy()
    expected = dict(zip(LABELS, 1.0 / (1.0 + np.exp(-logits))))  # calibrated: the thresholds are in the logits
    for entry in card.data.to_dict()["widget"][0]["output"]:
        assert entry["score"] == pytest.approx(expected[entry["label"]], abs=1e-4)

    # The low-level snippet says what 0.5 means when the checkpoint is calibrated.
    snippet = card.text.split("```python\n")[2].split("```")[0]
    assert ("decision threshold" in snippet) == (thresholds is not None)
    scope = {"np": np}  # the snippet follows the card's first one, which imports numpy
    exec(snippet.replace('"ORG/NAME"', repr(str(folder))), scope)
    direct = scope["logits"][0].double().numpy()
    np.testing.assert_allclose(scope["scores"][0].numpy(), 1.0 / (1.0 + np.exp(-direct)), atol=1e-6)
