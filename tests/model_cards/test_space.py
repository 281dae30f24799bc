"""
The Space page of a checkpoint (`model_cards/space.py`) and its publishing (`model_cards/space_repo.py`): the page's
functions without a browser (scores against the pipeline and `long_audio`, plot data, messages for bad input), the
Space's files and upload (HfApi is a stand-in), the published Space in a Python without the project, and the page
driven by a real headless Chromium.
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from huggingface_hub import ModelCard, SpaceCard
from transformers import pipeline

import audioformer.modeling_audioformer  # noqa: F401
from audioformer.model_cards import space
from audioformer.model_cards.card import SPACE_LINK, link_space, write_model_card
from audioformer.model_cards.publish import main as publish_main
from audioformer.model_cards.publish import publish
from audioformer.model_cards.space_repo import GRADIO_VERSION, space_files, write_space
from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerModel,
    long_audio,
)
from audioformer.modeling_audioformer.long_audio import (
    AudioFormerAudioClassificationPipeline,
    classify_long_audio,
    split_audio,
)
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import TINY_MODEL


REPO_ROOT = Path(__file__).resolve().parents[2]
LABELS = ["chirp", "clicks", "high_tone", "low_tone", "noise_band", "silence"]
TOP_K = 3
WINDOW = 1.0  # the test checkpoints' max_duration, seconds


def save_checkpoint(path: Path, codec_dir: str, model_class, task: str | None = None, **config_kwargs) -> str:
    """A tiny AudioFormer saved like a run's output: weights, config, feature extractor (1 s window) and card."""
    config = AudioFormerConfig(**TINY_MODEL, **config_kwargs)
    torch.manual_seed(0)
    model = model_class(config)
    if hasattr(model, "classifier"):  # spread the scores, so the top-k order is clear-cut
        torch.nn.init.normal_(model.classifier.weight, std=2.0)
    model.save_pretrained(path)
    AudioFormerFeatureExtractor(codec_name_or_path=codec_dir, max_duration=WINDOW).save_pretrained(path)
    if task:
        write_model_card(str(path), task=task, dataset_name="synthesised test clips")
    return str(path)


def classifier_config(problem_type: str = "single_label_classification") -> dict:
    return dict(
        num_labels=len(LABELS),
        problem_type=problem_type,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tiny_codec_dir):
    path = tmp_path_factory.mktemp("space") / "classifier"
    return save_checkpoint(
        path, tiny_codec_dir, AudioFormerForAudioClassification, "audio-classification", **classifier_config()
    )


@pytest.fixture(scope="module")
def classifier(classifier_dir):
    return space.load_checkpoint(classifier_dir)


@pytest.fixture(scope="module")
def reference_pipeline(classifier_dir):
    """The project's audio-classification pipeline on the same folder: what the page must agree with."""
    return pipeline(
        "audio-classification", model=classifier_dir, pipeline_class=AudioFormerAudioClassificationPipeline
    )


def write_clip(path: Path, seconds: float, sampling_rate: int = 16000, seed: int = 0) -> str:
    """A tone that glides and a little noise, written as 16-bit WAV (what a user uploads)."""
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    rng = np.random.default_rng(seed)
    wav = 0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, wav.astype(np.float32), sampling_rate, subtype="PCM_16")
    return str(path)


def pipeline_top_k(reference_pipeline, path: str, top_k: int, long_audio: str = "mean") -> list[dict]:
    """The pipeline's top-k for a file, decoded as the page decodes it (soundfile, down-mixed)."""
    wav, sampling_rate = sf.read(path, dtype="float32")
    return reference_pipeline({"raw": wav, "sampling_rate": sampling_rate}, long_audio=long_audio, top_k=top_k)


# ---------------------------------------------------------------------------------------------------------------
# The page's functions, without a browser
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds, aggregation", [(0.6, "mean"), (3.3, "mean"), (3.3, "max")])
def test_labels_are_the_pipelines_top_k(classifier, reference_pipeline, tmp_path, seconds, aggregation):
    path = write_clip(tmp_path / "clip.wav", seconds)
    message, labels, plot = space.classifier_outputs(classifier, path, aggregation, top_k=TOP_K)
    expected = pipeline_top_k(reference_pipeline, path, TOP_K, aggregation)
    assert list(labels) == [r["label"] for r in expected]
    np.testing.assert_allclose(list(labels.values()), [r["score"] for r in expected], atol=1e-5)
    if seconds <= WINDOW:
        assert plot is None and "one window" in message
    else:
        assert plot is not None and "6 windows of 1 s every 0.5 s" in message and aggregation in message


def test_window_scores_are_long_audio_scores(classifier, tmp_path):
    """Each window is scored as `classify_long_audio` scores that stretch of audio; the recording's scores are the
    mean / max of the windows, as `classify_long_audio` gives them for the whole recording."""
    wav, sampling_rate = sf.read(write_clip(tmp_path / "clip.wav", 2.7, sampling_rate=22050), dtype="float32")
    result = space.classify(classifier, wav, sampling_rate, "max", hop_duration=0.4)
    fe, model = classifier.feature_extractor, classifier.model
    starts = [0, 0.4, 0.8, 1.2, 1.6]  # every 0.4 s, then one window flush with the end (1.7 s)
    expected_times = [s + 0.5 for s in starts] + [(wav.size - 22050 + wav.size) / 2 / 22050]
    np.testing.assert_allclose(result.window_times, expected_times, atol=1e-4)
    for (start, end), row in zip(space.window_spans(wav.size, sampling_rate, WINDOW, 0.4), result.window_scores):
        reference = classify_long_audio(model, fe, wav[start:end], sampling_rate, long_audio="truncate")
        np.testing.assert_allclose(row, reference.numpy(), atol=1e-6)
    whole = classify_long_audio(model, fe, wav, sampling_rate, long_audio="max", hop_duration=0.4)
    np.testing.assert_allclose(result.scores, whole.numpy(), atol=1e-5)
    assert result.scores.sum() > 1.01  # max over windows of softmax scores: not a distribution any more


@pytest.mark.parametrize("num_samples, sampling_rate, hop", [(10, 8000, 0.5), (8000, 8000, 0.5), (30001, 16000, 0.3)])
def test_window_spans_are_split_audios_windows(num_samples, sampling_rate, hop):
    wav = np.arange(num_samples, dtype=np.float32)
    clips = split_audio(wav, sampling_rate, WINDOW, "mean", hop)
    spans = space.window_spans(num_samples, sampling_rate, WINDOW, hop)
    assert len(spans) == len(clips)
    for (start, end), clip in zip(spans, clips):
        np.testing.assert_array_equal(wav[start:end], clip)


def test_time_plot_data():
    result = space.Classification(
        labels=["a", "b", "c"],
        scores=np.array([0.2, 0.5, 0.3]),
        window_scores=np.array([[0.1, 0.6, 0.3], [0.3, 0.4, 0.3]]),
        window_times=np.array([0.5, 1.0]),
        aggregation="mean",
        seconds=1.5,
        window_seconds=1.0,
        hop_seconds=0.5,
    )
    data = space.time_plot_data(result, top_k=2)
    assert list(data.columns) == ["time", "label", "score"]
    assert data.values.tolist() == [[0.5, "b", 0.6], [1.0, "b", 0.4], [0.5, "c", 0.3], [1.0, "c", 0.3]]
    assert result.top(2) == {"b": 0.5, "c": 0.3}
    one_window = space.Classification(
        ["a"], np.array([1.0]), np.array([[1.0]]), np.array([0.4]), "mean", 0.8, 1.0, 0.5
    )
    assert space.time_plot_data(one_window, top_k=2) is None


def test_progress_is_reported_window_by_window(classifier, tmp_path):
    calls = []
    path = write_clip(tmp_path / "clip.wav", 3.3)
    space.classifier_outputs(classifier, path, progress=lambda value, **kw: calls.append((value, kw.get("desc"))))
    assert calls[0] == (0, "Reading audio")
    assert [c[0] for c in calls[1:]] == [(i, 6) for i in range(1, 7)]


def test_multi_label_scores_are_independent_sigmoids(tmp_path, tiny_codec_dir):
    path = save_checkpoint(
        tmp_path / "tagger",
        tiny_codec_dir,
        AudioFormerForAudioClassification,
        **classifier_config("multi_label_classification"),
    )
    checkpoint = space.load_checkpoint(path)
    clip = write_clip(tmp_path / "clip.wav", 0.8)
    _, labels, _ = space.classifier_outputs(checkpoint, clip, top_k=len(LABELS))
    wav, sampling_rate = sf.read(clip, dtype="float32")
    with torch.no_grad():
        features = checkpoint.feature_extractor(wav, sampling_rate=sampling_rate)
        probabilities = torch.sigmoid(checkpoint.model(**features).logits[0])
    assert labels == pytest.approx({LABELS[i]: float(p) for i, p in enumerate(probabilities)}, abs=1e-6)
    assert sum(labels.values()) != pytest.approx(1.0, abs=1e-3)
    assert "scored on its own" in space.describe(checkpoint)


def test_bad_input_gets_a_message(classifier, tmp_path, caplog):
    empty_file = tmp_path / "empty.wav"
    empty_file.write_bytes(b"")
    no_samples = tmp_path / "no_samples.wav"
    sf.write(no_samples, np.zeros(0, dtype=np.int16), 16000)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are notes, not audio\n" * 50)
    hour = tmp_path / "hour.wav"  # a real hour, at 1 kHz to keep the file small (7 MB); only its header is read
    sf.write(hour, np.zeros(3600 * 1000, dtype=np.int16), 1000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1] * 100, dtype=np.float32), 16000, subtype="FLOAT")
    cases = {
        None: "No audio yet",
        str(empty_file): "empty.wav",
        str(no_samples): "no_samples.wav holds no audio",
        str(not_audio): "Could not read notes.wav as audio",
        str(hour): "hour.wav is 60:00 long; this page scores recordings of up to 10:00",
        str(nan): "NaN",
    }
    for path, expected in cases.items():
        message, labels, plot = space.classifier_outputs(classifier, path)
        assert expected in message and labels is None and plot is None, (path, message)
    assert "Traceback" not in caplog.text

    with caplog.at_level(logging.ERROR, logger="audioformer.model_cards.space"):
        broken = space.Checkpoint("broken", "classifier", classifier.config, classifier.feature_extractor, None, None)
        message, labels, _ = space.classifier_outputs(broken, write_clip(tmp_path / "clip.wav", 0.5))
    assert message.startswith("**Something went wrong") and labels is None
    assert "Traceback" in caplog.text  # the log keeps the details the page leaves out


def test_ffmpeg_reads_what_soundfile_cannot(classifier, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg binary is not installed")
    clip = write_clip(tmp_path / "clip.wav", 0.8)
    m4a = tmp_path / "clip.m4a"  # AAC in MP4, like a phone recording: soundfile cannot read it
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", clip, str(m4a)], check=True)
    with pytest.raises(sf.SoundFileError):
        sf.info(m4a)
    waveform, sampling_rate = space.read_audio(str(m4a), max_seconds=60, sampling_rate=24000)
    assert sampling_rate == 24000 and abs(waveform.size / 24000 - 0.8) < 0.05
    _, labels, _ = space.classifier_outputs(classifier, str(m4a))
    assert len(labels) == space.TOP_K


@pytest.fixture(scope="module")
def masked_lm(tmp_path_factory, tiny_codec_dir):
    path = tmp_path_factory.mktemp("space") / "mlm"
    return space.load_checkpoint(save_checkpoint(path, tiny_codec_dir, AudioFormerForMaskedLM, "fill-mask"))


def test_masked_lm_page(masked_lm, tmp_path):
    assert masked_lm.kind == "masked-lm"
    wav, sampling_rate = sf.read(write_clip(tmp_path / "clip.wav", 1.6), dtype="float32")
    result = space.restore_masked_codes(masked_lm, wav, sampling_rate, seed=3)
    fe, model = masked_lm.feature_extractor, masked_lm.model
    features = fe(wav, sampling_rate=sampling_rate)
    row = features["input_ids"][0, 0]
    codes = row[1 : 1 + fe.max_frames] - 3  # <BOA> c_1+3 ... c_F+3 <EOA>: the first 1 s only
    np.testing.assert_array_equal(result.codes, codes.numpy())
    assert result.num_masked == round(0.25 * len(codes)) and result.codebook_row == 0
    assert (result.predicted[~result.masked] == -1).all()

    # independently: the (batch, codebooks, time) input with the masked row, through the model's own row selection
    ids = features["input_ids"].clone()
    masked_positions = 1 + np.flatnonzero(result.masked)
    ids[0, 0, masked_positions] = 1027
    with torch.no_grad():
        guesses = model(input_ids=ids, attention_mask=features["attention_mask"]).logits[0].argmax(-1) - 3
    np.testing.assert_array_equal(result.predicted[result.masked], guesses[masked_positions].numpy())
    restored = (guesses[masked_positions] == codes[masked_positions - 1]).float().mean()
    assert result.accuracy == pytest.approx(float(restored))
    again = space.restore_masked_codes(masked_lm, wav, sampling_rate, seed=3)
    np.testing.assert_array_equal(again.masked, result.masked)

    message, highlighted = space.masked_lm_outputs(masked_lm, str(tmp_path / "clip.wav"))
    assert f"Masked {round(0.25 * len(codes))} of the {len(codes)} codes of codebook C1" in message
    assert "its first 1 s" in message and "chance: 1 in 1024" in message
    categories = [category for _, category in highlighted if category]
    assert len(categories) == round(0.25 * len(codes)) and set(categories) <= {"restored", "missed"}
    assert space.masked_lm_outputs(masked_lm, None) == (
        "**No audio yet: upload a file or record a clip first.**",
        None,
    )


def test_description_says_what_the_model_is(classifier, masked_lm, tmp_path, tiny_codec_dir, monkeypatch):
    text = space.describe(classifier)
    assert classifier.summary.startswith("An AudioFormer single-label audio classifier (6 classes)")
    codec_dir = Path(classifier.feature_extractor.codec_name_or_path)  # the local codec travels with the folder
    assert classifier.summary in text and str(codec_dir) in text and "3 kbps" in text
    assert "reads codebook C1 and sees 1 s at a time" in text
    assert long_audio.score_description(classifier.config)[1:] in text and "windows of 1 s every 0.5 s" in text
    assert "no classifier" in space.describe(masked_lm)
    monkeypatch.chdir(codec_dir.parent)  # a local codec below the working folder: its relative path
    assert f"EnCodec model `{codec_dir.name}` at 3 kbps" in space.describe(classifier)

    encoder = space.load_checkpoint(save_checkpoint(tmp_path / "encoder", tiny_codec_dir, AudioFormerModel))
    assert encoder.kind == "encoder" and encoder.model is None and encoder.summary is None
    assert "no classifier and no masked-LM head" in space.describe(encoder)

    # where long_audio describes the scores itself (decision thresholds), the page says what it says
    monkeypatch.setattr(space.long_audio, "score_description", lambda config: "scores from long_audio.")
    assert "**Scores.** Scores from long_audio." in space.describe(classifier)


def test_the_page_has_its_parts(classifier_dir, tmp_path, tiny_codec_dir):
    pytest.importorskip("gradio")

    def elem_ids(demo):
        return {block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)}

    assert {"audio", "aggregation", "run", "message", "labels", "time-plot"} <= elem_ids(
        space.build_demo(classifier_dir)
    )
    mlm_dir = save_checkpoint(tmp_path / "mlm", tiny_codec_dir, AudioFormerForMaskedLM)
    assert {"audio", "run", "message", "codes"} <= elem_ids(space.build_demo(mlm_dir))
    with pytest.raises(SystemExit):
        space.main([classifier_dir, "--top_k", "0"])


# ---------------------------------------------------------------------------------------------------------------
# The Space's files and publishing
# ---------------------------------------------------------------------------------------------------------------


def test_space_files():
    files = space_files("org/audioformer-tiny")
    assert sorted(files) == [
        "README.md",
        "app.py",
        "audioformer_space.py",
        "long_audio.py",
        "packages.txt",
        "requirements.txt",
    ]
    card = SpaceCard(files["README.md"])
    data = card.data.to_dict()
    assert data["sdk"] == "gradio" and data["app_file"] == "app.py" and data["models"] == ["org/audioformer-tiny"]
    assert data["sdk_version"] == GRADIO_VERSION
    assert "[org/audioformer-tiny](https://huggingface.co/org/audioformer-tiny)" in card.text
    compile(files["app.py"], "app.py", "exec")
    assert 'build_demo("org/audioformer-tiny")' in files["app.py"]
    assert files["audioformer_space.py"] == Path(space.__file__).read_text()
    assert files["long_audio.py"] == Path(space.long_audio.__file__).read_text()
    requirements = files["requirements.txt"].splitlines()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements
    assert f"transformers=={__import__('transformers').__version__}" in requirements
    assert f"soxr=={__import__('soxr').__version__}" in requirements  # the feature extractor resamples with it
    assert not any(line.startswith("gradio") for line in requirements)  # the Space installs sdk_version itself
    with pytest.raises(ValueError, match="org/name"):
        space_files("not a repo id")


def test_gradio_pin_is_the_spaces_sdk_version():
    """The `space` extra, the Space's sdk_version and the Gradio the tests run are one version."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"gradio=={GRADIO_VERSION}" in extras["space"] and f"gradio=={GRADIO_VERSION}" in extras["dev"]
    gradio = pytest.importorskip("gradio")
    assert gradio.__version__ == GRADIO_VERSION


def test_link_space(tmp_path):
    assert not link_space(tmp_path, "org/x-demo")  # no card
    (tmp_path / "README.md").write_text(
        "---\ntags:\n- audio\n---\n\n# Title\n\nWhat it is,\non two lines.\n\n## Use\n"
    )
    assert link_space(tmp_path, "org/x-demo")
    lines = (tmp_path / "README.md").read_text().splitlines()
    at = lines.index("on two lines.")
    assert lines[at + 1] == "" and lines[at + 2].startswith(SPACE_LINK) and lines[at + 3 :] == ["", "## Use"]
    assert "(https://huggingface.co/spaces/org/x-demo)" in lines[at + 2]
    link_space(tmp_path, "org/y-demo")  # moved: one link, to the new Space
    text = (tmp_path / "README.md").read_text()
    assert text.count(SPACE_LINK) == 1 and "spaces/org/y-demo" in text and "x-demo" not in text


def test_publish_with_a_space(classifier_dir, tmp_path, fake_hub_api):
    folder = tmp_path / "out"
    shutil.copytree(classifier_dir, folder)
    api = fake_hub_api()
    assert publish(folder, "org/tiny", private=True, token="hf_x", space_id="org/tiny-demo", api=api) == "commit-2"
    (
        (create, repo_id, kwargs),
        (_, upload, model_files),
        (create2, space_id, space_kwargs),
        (_, space_upload, files),
    ) = api.calls
    assert (create, repo_id, create2, space_id) == ("create_repo", "org/tiny", "create_repo", "org/tiny-demo")
    assert space_kwargs["repo_type"] == "space" and space_kwargs["space_sdk"] == "gradio"
    assert space_kwargs["private"] is True and space_kwargs["exist_ok"] is True and space_kwargs["token"] == "hf_x"
    assert space_upload["repo_id"] == "org/tiny-demo" and space_upload["repo_type"] == "space"
    assert {name: text.decode() for name, text in files.items()} == space_files("org/tiny")
    # the card that went up links to the Space, once, even when published again
    card = ModelCard(model_files["README.md"].decode())
    assert "(https://huggingface.co/spaces/org/tiny-demo)" in card.text
    publish(folder, "org/tiny", space_id="org/tiny-demo", api=fake_hub_api())
    assert (folder / "README.md").read_text().count(SPACE_LINK) == 1
    with pytest.raises(ValueError, match="space_id"):
        publish(folder, "org/tiny", space_id="no-slash", api=fake_hub_api())


def test_cli_dry_run_lists_the_space_files(classifier_dir, capsys):
    publish_main([classifier_dir, "--repo_id", "org/tiny", "--space_id", "org/tiny-demo", "--dry_run"])
    out = capsys.readouterr().out
    model_part, space_part = out.split("Space org/tiny-demo (https://huggingface.co/spaces/org/tiny-demo):")
    assert "model.safetensors" in model_part.split()
    assert space_part.split() == sorted(space_files("org/tiny"))


# ---------------------------------------------------------------------------------------------------------------
# The published Space, in a Python without the project
# ---------------------------------------------------------------------------------------------------------------

SPACE_SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys

    PROJECT = ("audioformer", "modeling_audioformer", "tokenization", "model_cards", "training")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in PROJECT:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: no AudioFormer project here)")
            return None

    sys.meta_path.insert(0, Blocker())
    import app  # builds the page for the published checkpoint, as the Space does (without serving it)
    import audioformer_space

    assert audioformer_space.TRUST_REMOTE_CODE
    checkpoint = audioformer_space.load_checkpoint(sys.argv[1])
    message, labels, plot = audioformer_space.classifier_outputs(checkpoint, sys.argv[2], top_k=3)
    print("RESULT=" + json.dumps({
        "page": type(app.demo).__name__, "model": type(checkpoint.model).__module__, "message": message,
        "labels": labels, "plot_rows": None if plot is None else len(plot), "summary": checkpoint.summary,
    }))
""")


@pytest.mark.slow
def test_published_space_runs_without_the_project(classifier, classifier_dir, tmp_path, tiny_codec_dir):
    from test_remote_code import CODEC_ID, populate_hub_cache  # the Hub cache layout of the remote-code test

    repo_id = "org/audioformer-space-test"
    published = tmp_path / "published"
    shutil.copytree(classifier_dir, published)
    fe_config = published / "preprocessor_config.json"
    fe_config.write_text(fe_config.read_text().replace(tiny_codec_dir, CODEC_ID))
    populate_hub_cache(tmp_path / "hf_home" / "hub", repo_id, published)
    codec = tmp_path / "codec"
    codec.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_codec_dir) / name, codec / name)
    populate_hub_cache(tmp_path / "hf_home" / "hub", CODEC_ID, codec)

    space_dir = tmp_path / "space"
    write_space(space_dir, repo_id)
    (space_dir / "check.py").write_text(SPACE_SCRIPT)
    clip = write_clip(tmp_path / "clip.wav", 2.2)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1")
    proc = subprocess.run(
        [sys.executable, "check.py", repo_id, clip],
        cwd=space_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))[len("RESULT=") :])
    assert out["page"] == "Blocks" and out["model"].startswith("transformers_modules.")
    assert out["summary"] == classifier.summary  # the card, read from the Hub cache
    # the same page with the project's own classes, on the local folder
    message, labels, plot = space.classifier_outputs(classifier, clip, top_k=3)
    assert out["message"] == message and out["plot_rows"] == len(plot) == 3 * 4  # 3 labels, 4 windows
    assert list(out["labels"]) == list(labels)
    np.testing.assert_allclose(list(out["labels"].values()), list(labels.values()), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# The page in a real browser
# ---------------------------------------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Chromium's stand-in microphone (a beep) and no permission prompt, for the recording step.
FAKE_MICROPHONE_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
ARTIFACTS = Path(os.environ.get("AUDIOFORMER_TEST_ARTIFACTS", REPO_ROOT / "tests" / "artifacts")) / "space"


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen, url: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the page's server exited with {proc.returncode}:\n{proc.stdout.read()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the page's server did not answer {url} within {timeout:.0f} s")


@pytest.fixture
def served_page(classifier_dir, tmp_path):
    """`python -m audioformer.model_cards.space` on the tiny classifier, on a free local port; stopped after the
    test."""
    port = free_local_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),  # where the server keeps uploads and recordings
    }
    command = [
        sys.executable,
        "-m",
        "audioformer.model_cards.space",
        classifier_dir,
        "--port",
        str(port),
        "--top_k",
        str(TOP_K),
    ]
    proc = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(proc, url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def shown_labels(page) -> list[tuple[str, str]]:
    names = page.locator("#labels dt.text").all_inner_texts()
    percents = page.locator("#labels dd.confidence").all_inner_texts()
    return list(zip(names, percents))


def upload_and_wait(page, path: str, expected_message: str):
    file_input = page.locator("#audio input[type=file]")
    # the drop zone (a hidden file input) or, with a clip loaded, the player and its Clear button: wait for either
    page.locator("#audio input[type=file], #audio button[aria-label=Clear]").first.wait_for(state="attached")
    if not file_input.count():  # a clip is loaded: the player replaced the drop zone
        page.locator("#audio button[aria-label=Clear]").click()
    file_input.set_input_files(path)
    page.locator("#message", has_text=expected_message).wait_for(timeout=60_000)


@pytest.mark.slow
def test_the_page_in_a_browser(served_page, reference_pipeline, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra has it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"screenshots of the page: {ARTIFACTS}")
    short_clip = write_clip(tmp_path / "short_clip.wav", 0.7, seed=1)
    long_clip = write_clip(tmp_path / "long_clip.wav", 4.2, seed=2)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are notes, not audio\n" * 50)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS + FAKE_MICROPHONE_FLAGS)
        try:
            context = browser.new_context(permissions=["microphone"], viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.goto(served_page)
            page.locator("#model-description", has_text="single-label audio classifier (6 classes)").wait_for()

            # a short clip: its top-k labels, no plot
            upload_and_wait(page, short_clip, "in one window")
            expected = pipeline_top_k(reference_pipeline, short_clip, TOP_K, "truncate")
            shown = shown_labels(page)
            assert [name for name, _ in shown] == [r["label"] for r in expected]
            for (_, percent), r in zip(shown, expected):
                assert abs(int(percent.rstrip("%")) - 100 * r["score"]) <= 0.5 + 1e-6, (percent, r)
            assert not page.locator("#time-plot").is_visible()
            page.screenshot(path=str(ARTIFACTS / "short_clip.png"), full_page=True)

            # a long one: the labels of the windows' mean, and the plot over time
            upload_and_wait(page, long_clip, "windows of 1 s every 0.5 s")
            expected = pipeline_top_k(reference_pipeline, long_clip, TOP_K, "mean")
            assert [name for name, _ in shown_labels(page)] == [r["label"] for r in expected]
            plot = page.locator("#time-plot")
            plot.locator("canvas, svg.marks").first.wait_for(timeout=30_000)
            assert plot.is_visible()
            legend = plot.inner_text()
            assert all(r["label"] in legend for r in expected), legend
            page.screenshot(path=str(ARTIFACTS / "long_clip.png"), full_page=True)

            # not audio: a message in the page, no labels
            upload_and_wait(page, str(not_audio), "Could not read notes.wav as audio")
            assert shown_labels(page) == []
            page.screenshot(path=str(ARTIFACTS / "not_audio.png"), full_page=True)

            # a recording from the (stand-in) microphone: stop, and it is scored
            page.locator("#audio button[aria-label='Record audio']").click()
            page.locator("#audio button.record-button").click()
            time.sleep(1.5)
            page.locator("#audio button.stop-button").click()
            page.locator("#message", has_text="Scored").wait_for(timeout=60_000)
            assert len(shown_labels(page)) == TOP_K
            page.screenshot(path=str(ARTIFACTS / "recording.png"), full_page=True)
        finally:
            browser.close()
