"""Model card rendering and the publish command, offline: HfApi is a stand-in."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import audioformer.modeling_audioformer  # noqa: F401
from audioformer.model_cards.card import write_model_card
from audioformer.model_cards.publish import files_to_upload, main, publish
from audioformer.model_cards.remote_code import complete_auto_map
from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
)
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import TINY_MODEL


@pytest.fixture
def classifier_dir(tmp_path, tiny_codec_dir):
    config = AudioFormerConfig(
        **TINY_MODEL,
        num_labels=3,
        problem_type="multi_label_classification",
        id2label={0: "dog", 1: "rain", 2: "siren"},
        label2id={"dog": 0, "rain": 1, "siren": 2},
    )
    torch.manual_seed(0)
    AudioFormerForAudioClassification(config).save_pretrained(tmp_path / "out")
    AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0).save_pretrained(tmp_path / "out")
    return tmp_path / "out"


def test_classification_card(classifier_dir):
    path = write_model_card(
        str(classifier_dir),
        task="audio-classification",
        metrics={"eval_mAP": 0.4123, "eval_loss": 0.7, "eval_runtime": 3.0, "epoch": 2.0},
        dataset_name="agkphysics/AudioSet",
        base_model="org/audioformer-pretrained",
        training_args={"learning_rate": 1e-4, "num_train_epochs": 2},
        log_history=[{"step": 10, "loss": 1.0}, {"step": 20, "loss": 0.8}, {"step": 20, "eval_loss": 0.7}],
        per_class_ap={"dog": 0.6, "rain": 0.4, "siren": 0.2},
    )
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "audio-classification" and data["library_name"] == "transformers"
    assert data["datasets"] == ["agkphysics/AudioSet"] and data["base_model"] == "org/audioformer-pretrained"
    assert "multi-label" in data["tags"] and "custom_code" in data["tags"]
    results = data["model-index"][0]["results"]
    assert {r["metrics"][0]["type"]: r["metrics"][0]["value"] for r in results} == {"mAP": 0.4123}
    widget = data["widget"][0]
    assert widget["src"] == "example.wav" and len(widget["output"]) == 3
    assert {o["label"] for o in widget["output"]} == {"dog", "rain", "siren"}
    assert all(0.0 <= o["score"] <= 1.0 for o in widget["output"])
    text = card.text
    assert "| mAP | 0.4123 |" in text and "learning_rate: `0.0001`" in text
    assert 'pipeline("audio-classification", model="ORG/NAME", trust_remote_code=True)' in text
    assert "runtime" not in text  # bookkeeping is not a result
    for name in ("handler.py", "long_audio.py", "example.wav"):
        assert (classifier_dir / name).is_file(), name
    # an Endpoint installs these: the feature extractor resamples with soxr, the handler decodes with soundfile
    assert (classifier_dir / "requirements.txt").read_text().split() == ["soxr>=0.5,<2", "soundfile>=0.12"]
    if importlib.util.find_spec("matplotlib"):
        for name in ("per_class_ap.png", "training_curve.png"):
            assert (classifier_dir / name).read_bytes()[:4] == b"\x89PNG"
            assert f"({name})" in text


def test_card_snippet_runs(classifier_dir):
    """The low-level snippet of the card runs as written against the local folder (no trust needed here)."""
    write_model_card(str(classifier_dir), task="audio-classification")
    text = ModelCard.load(classifier_dir / "README.md").text
    snippet = text.split("```python\n")[2].split("```")[0]
    assert "feature_extractor(audio, sampling_rate=16000)" in snippet
    scope = {"np": __import__("numpy")}
    exec(snippet.replace('"ORG/NAME"', repr(str(classifier_dir))), scope)
    assert scope["scores"].shape == (1, 3)


def test_fill_mask_card_and_complete_auto_map(tmp_path, tiny_config):
    AudioFormerForMaskedLM(tiny_config()).save_pretrained(tmp_path)
    path = write_model_card(str(tmp_path), task="fill-mask", metrics={"eval_loss": 5.5, "eval_accuracy": 0.1})
    data = ModelCard.load(path).data.to_dict()
    assert data["pipeline_tag"] == "fill-mask" and "widget" not in data
    assert not (tmp_path / "handler.py").exists()
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_audioformer.AudioFormerModel"
    assert auto_map["AutoModelForAudioClassification"] == "modeling_audioformer.AudioFormerForAudioClassification"
    assert complete_auto_map(tmp_path) == auto_map  # idempotent
    with pytest.raises(ValueError, match="task"):
        write_model_card(str(tmp_path), task="text-generation")


def test_files_to_upload_checks_the_folder(classifier_dir):
    (classifier_dir / "training_args.bin").write_bytes(b"pickle")
    (classifier_dir / "checkpoint-10").mkdir()
    (classifier_dir / "checkpoint-10" / "optimizer.pt").write_bytes(b"pickle")
    files = files_to_upload(classifier_dir)
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.startswith("checkpoint-") or f == "training_args.bin"]

    (classifier_dir / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="pickled"):
        files_to_upload(classifier_dir)
    (classifier_dir / "pytorch_model.bin").unlink()
    (classifier_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="safetensors"):
        files_to_upload(classifier_dir)


def test_publish_uploads_with_the_hub_api(classifier_dir, fake_hub_api):
    write_model_card(str(classifier_dir), task="audio-classification")
    api = fake_hub_api()
    assert publish(classifier_dir, "org/audioformer-tiny", private=True, token="hf_x", api=api) == "commit-2"
    (name, repo_id, kwargs), (name2, upload, _) = api.calls
    assert (name, repo_id, name2) == ("create_repo", "org/audioformer-tiny", "upload_folder")
    assert kwargs["private"] is True and kwargs["exist_ok"] is True
    assert upload["repo_id"] == "org/audioformer-tiny" and Path(upload["folder_path"]) == classifier_dir
    assert "training_args.bin" in upload["ignore_patterns"] and "checkpoint-*" in upload["ignore_patterns"]
    widget = ModelCard.load(classifier_dir / "README.md").data.to_dict()["widget"][0]
    assert widget["src"] == "https://huggingface.co/org/audioformer-tiny/resolve/main/example.wav"
    with pytest.raises(ValueError, match="org/name"):
        publish(classifier_dir, "no-slash", api=fake_hub_api())


def test_cli(classifier_dir, monkeypatch, capsys):
    main([str(classifier_dir), "--repo_id", "org/x", "--dry_run"])
    listed = capsys.readouterr().out.split()
    assert "model.safetensors" in listed and "preprocessor_config.json" in listed

    seen = {}
    monkeypatch.setattr(
        "huggingface_hub.HfApi.create_repo", lambda self, repo_id, **kw: seen.setdefault("repo", repo_id)
    )
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", lambda self, **kw: seen.setdefault("upload", kw))
    main([str(classifier_dir), "--repo_id", "org/x", "--private"])
    assert seen["repo"] == "org/x" and seen["upload"]["folder_path"] == str(classifier_dir)


def test_free_text_dataset_and_local_base_model_stay_out_of_metadata(classifier_dir, tmp_path):
    path = write_model_card(
        str(classifier_dir),
        task="audio-classification",
        metrics={"eval_mAP": 0.3},
        dataset_name="synthesised demo clips, NOT real audio",
        base_model=str(tmp_path),
    )
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert "datasets" not in data and "base_model" not in data
    assert data["model-index"][0]["results"][0]["dataset"]["type"] == "custom"
    assert "synthesised demo clips, NOT real audio" in card.text
