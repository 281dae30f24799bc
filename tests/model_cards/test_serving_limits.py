"""Hostile requests to what serves a checkpoint: long_audio's windows, the Endpoints handler, the Space."""

import base64
import importlib.util
import io
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import pipeline

import audioformer.tokenization  # noqa: F401  registers the Auto classes
from audioformer.model_cards import space
from audioformer.model_cards.card import write_model_card
from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification
from audioformer.modeling_audioformer.long_audio import (
    MAX_WINDOWS,
    AudioFormerAudioClassificationPipeline,
    classify_long_audio,
    sliding_windows,
    split_audio,
)
from audioformer.tokenization import AudioFormerFeatureExtractor


LABELS = ["dog", "rain", "siren", "speech"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_codec_dir):
    """A carded tiny classifier (max_duration 1 s) as an Inference Endpoint sees its repository."""
    path = tmp_path_factory.mktemp("served") / "model"
    config = AudioFormerConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    AudioFormerForAudioClassification(config).save_pretrained(path)
    AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0).save_pretrained(path)
    write_model_card(str(path), task="audio-classification")
    return path


def load_handler_module(folder):
    spec = importlib.util.spec_from_file_location("endpoint_handler", folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def handler_module(served):
    return load_handler_module(served)


@pytest.fixture(scope="module")
def handler(handler_module, served):
    return handler_module.EndpointHandler(str(served))


def wav_at(sampling_rate, seconds, seed=0):
    t = np.arange(int(sampling_rate * seconds)) / sampling_rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 330 * t * (1 + t)) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def wav_bytes(wav, sampling_rate, format="WAV", subtype=None):
    buffer = io.BytesIO()
    sf.write(buffer, wav, sampling_rate, format=format, subtype=subtype)
    return buffer.getvalue()


# ---------------------------------------------------------------- 2. windows and duration


def test_a_hop_below_a_tenth_of_the_window_is_refused():
    """hop_duration=0.0001 on a 2 s clip made 8,000 windows of 1 s (at max_duration 10 s: 144,000 for 10 s)."""
    wav = np.zeros(2 * 16000, np.float32)
    with pytest.raises(ValueError, match=r"hop_duration=0.0001 s is below the smallest hop.*hop_duration >= 0.1"):
        split_audio(wav, 16000, 1.0, "mean", 0.0001)
    assert len(split_audio(wav, 16000, 1.0, "mean", 0.1)) == 11  # a tenth of the window is allowed
    for bad in (True, "1", float("nan"), -1.0):
        with pytest.raises(ValueError, match="hop_duration must be a positive number of seconds"):
            split_audio(wav, 16000, 1.0, "mean", bad)


def test_more_windows_than_max_windows_are_refused(served):
    sr = 1000  # a window of 1 s every 0.1 s: MAX_WINDOWS + 1 windows
    wav = np.zeros(sr + MAX_WINDOWS * sr // 10, np.float32)
    assert len(sliding_windows(wav.size, sr, sr // 10)) == MAX_WINDOWS + 1
    with pytest.raises(ValueError, match=rf"are {MAX_WINDOWS + 1} windows, more than max_windows={MAX_WINDOWS}"):
        split_audio(wav, sr, 1.0, "max", 0.1)
    assert len(split_audio(wav, sr, 1.0, "max", 0.1, max_windows=None)) == MAX_WINDOWS + 1

    # through classify_long_audio and the pipeline, which take max_windows too
    fe = AudioFormerFeatureExtractor.from_pretrained(served)
    model = AudioFormerForAudioClassification.from_pretrained(served).eval()
    clip = wav_at(16000, 2.5)
    with pytest.raises(ValueError, match="more than max_windows=3. Pass a larger hop_duration"):
        classify_long_audio(model, fe, clip, 16000, long_audio="mean", hop_duration=0.25, max_windows=3)
    classifier = pipeline(
        "audio-classification", model=str(served), pipeline_class=AudioFormerAudioClassificationPipeline
    )
    with pytest.raises(ValueError, match="more than max_windows=3"):
        classifier({"raw": clip, "sampling_rate": 16000}, long_audio="mean", hop_duration=0.25, max_windows=3)
    expected = classify_long_audio(model, fe, clip, 16000, long_audio="mean", hop_duration=0.25)
    got = classifier({"raw": clip, "sampling_rate": 16000}, long_audio="mean", hop_duration=0.25, top_k=None)
    np.testing.assert_allclose([{r["label"]: r["score"] for r in got}[label] for label in LABELS], expected, atol=1e-5)


def test_the_handler_refuses_audio_over_its_duration_limit(handler_module, handler, served, monkeypatch):
    assert handler.max_seconds == 600  # 10 minutes by default, like the Space
    long = np.zeros(601 * 1000, np.float32)  # 10 min 1 s at 1 kHz
    request = {"inputs": long, "parameters": {"sampling_rate": 1000, "long_audio": "mean"}}
    with pytest.raises(
        ValueError, match=r"601.0 s long; this endpoint scores at most 600 s .*AUDIOFORMER_MAX_MINUTES"
    ):
        handler(request)
    # the environment variable of the Endpoint, and the handler's parameter, change it
    clip = wav_at(16000, 1.0)
    monkeypatch.setenv("AUDIOFORMER_MAX_MINUTES", "0.01")  # 0.6 s
    short = handler_module.EndpointHandler(str(served))
    with pytest.raises(ValueError, match="at most 0.6 s"):
        short({"inputs": clip.tolist(), "parameters": {"sampling_rate": 16000}})
    with pytest.raises(ValueError, match="at most 0.6 s"):  # a file: refused from its header, before it is decoded
        monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("decoded a file over the limit"))
        short({"inputs": wav_bytes(clip, 16000)})
    monkeypatch.undo()
    assert len(handler_module.EndpointHandler(str(served), max_minutes=0.02)({"inputs": wav_bytes(clip, 16000)})) == 4
    monkeypatch.setenv("AUDIOFORMER_MAX_MINUTES", "ten")
    with pytest.raises(ValueError, match="AUDIOFORMER_MAX_MINUTES must be a positive number of minutes, got 'ten'"):
        handler_module.EndpointHandler(str(served))


# ---------------------------------------------------------------- 3. decoding without ffmpeg


@pytest.fixture
def no_ffmpeg(monkeypatch, tmp_path):
    """A stock Endpoint image: no ffmpeg on PATH."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert shutil.which("ffmpeg") is None


@pytest.mark.parametrize("format, subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", None), ("OGG", None)])
def test_files_soundfile_reads_need_no_ffmpeg(handler, no_ffmpeg, format, subtype):
    wav = wav_at(16000, 0.8)
    payload = wav_bytes(wav, 16000, format, subtype)
    decoded, rate = sf.read(io.BytesIO(payload), dtype="float32")
    expected = handler({"inputs": decoded.tolist(), "parameters": {"sampling_rate": rate, "top_k": 4}})
    for inputs in (payload, base64.b64encode(payload).decode()):  # raw bytes, and base64 in JSON
        assert handler({"inputs": inputs, "parameters": {"top_k": 4}}) == expected


def test_without_ffmpeg_other_formats_are_refused_saying_which(handler, no_ffmpeg):
    with pytest.raises(
        ValueError, match=r"soundfile cannot read this audio .*ffmpeg, which decodes .*WebM.* not installed"
    ):
        handler({"inputs": b"\x1aE\xdf\xa3" + bytes(200)})  # the start of a WebM file


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg binary is not installed")
def test_ffmpeg_decodes_the_rest_and_no_more_than_the_limit(handler_module, handler, tmp_path):
    wav_path = tmp_path / "clip.wav"
    sf.write(wav_path, wav_at(16000, 3.0), 16000)
    m4a = tmp_path / "clip.m4a"  # AAC in MP4: soundfile cannot read it
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav_path), str(m4a)], check=True)
    payload = m4a.read_bytes()
    assert len(handler({"inputs": payload})) == 4
    waveform, rate = handler_module.decode_audio(payload, 24000, max_seconds=10)
    assert rate == 24000 and abs(waveform.size / rate - 3.0) < 0.05
    with pytest.raises(ValueError, match="at most 1 s"):
        handler_module.decode_audio(payload, 24000, max_seconds=1)
    with pytest.raises(ValueError, match="neither soundfile nor ffmpeg reads it"):
        handler({"inputs": b"not audio at all" * 20})


# ---------------------------------------------------------------- 4. fields


@pytest.mark.parametrize(
    "request_body, message",
    [
        ([0.0] * 100, r'The request has no "inputs"'),
        ({"audio": [0.0] * 100}, r"""The request has no "inputs" \(got \['audio'\]\)"""),
        (
            {"inputs": [0.0] * 100, "parameters": {"sampling_rate": True}},
            "sampling_rate must be a whole number, got True",
        ),
        ({"inputs": [0.0] * 100, "parameters": {"sampling_rate": 16000.7}}, "sampling_rate must be a whole number"),
        ({"inputs": [0.0] * 100, "parameters": {"sampling_rate": "16000"}}, "sampling_rate must be a whole number"),
        ({"inputs": [0.0] * 100, "parameters": {"sampling_rate": 500}}, "500 Hz is outside the accepted range"),
        ({"inputs": [0.0] * 100, "parameters": {"sampling_rate": 16000, "top_k": -1}}, "top_k must be from 1 to 4"),
        ({"inputs": [0.0] * 100, "parameters": {"sampling_rate": 16000, "top_k": 0}}, "top_k must be from 1 to 4"),
        ({"inputs": [0.0] * 100, "parameters": {"sampling_rate": 16000, "top_k": 5}}, "top_k must be from 1 to 4"),
        (
            {"inputs": [0.0] * 100, "parameters": {"sampling_rate": 16000, "top_k": 2.5}},
            "top_k must be a whole number",
        ),
        (
            {"inputs": [0.0] * 100, "parameters": {"sampling_rate": 16000, "top_k": True}},
            "top_k must be a whole number",
        ),
        (
            {"inputs": [0.0] * 100, "parameters": {"sampling_rate": 16000, "long_audio": "median"}},
            r"long_audio must be one of \['truncate', 'mean', 'max'\], got 'median'",
        ),
        (
            {"inputs": [0.0] * 100, "parameters": {"sampling_rate": 16000, "topk": 3}},
            r"Unknown parameter\(s\) \['topk'\]: valid ones are \['sampling_rate', 'top_k', 'long_audio'",
        ),
        ({"inputs": [0.0] * 100, "parameters": [16000]}, '"parameters" must be an object'),
        ({"inputs": "not base64 !!"}, '"inputs" is a string but not base64'),
        ({"inputs": {"sampling_rate": 16000}}, 'needs the samples as "raw"'),
        (
            {"inputs": [[0.0, 1.0], [0.0]], "parameters": {"sampling_rate": 16000}},
            '"inputs" must be a list of numbers',
        ),
    ],
)
def test_bad_fields_are_refused_saying_what_is_valid(handler, request_body, message):
    with pytest.raises(ValueError, match=message):
        handler(request_body)


def test_top_k_null_is_every_label_and_integral_floats_are_whole_numbers(handler):
    clip = wav_at(16000, 0.5).tolist()
    everything = handler({"inputs": clip, "parameters": {"sampling_rate": 16000, "top_k": None}})
    assert sorted(r["label"] for r in everything) == sorted(LABELS)
    assert handler({"inputs": clip, "parameters": {"sampling_rate": 16000.0, "top_k": 2.0}}) == everything[:2]
    assert len(handler({"inputs": clip, "parameters": {"sampling_rate": 16000}})) == 4  # default 5, capped


# ---------------------------------------------------------------- 5. the Space's uploads and queue


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_upload(url: str, size: int) -> int:
    boundary = "audioformerboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + bytes(size)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url + "gradio_api/upload", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_space_bounds_uploads_and_its_queue(monkeypatch):
    """The page's server refuses uploads over MAX_MINUTES of 16-bit stereo 48 kHz audio (a 300 MB POST was stored
    and answered 200) and keeps its queue bounded."""
    gr = pytest.importorskip("gradio")
    assert space.max_upload_bytes(10) == 10 * 60 * 48000 * 4 + 2**20  # 116 MB
    max_minutes = 0.05  # 3 s: 1.6 MB
    limit = space.max_upload_bytes(max_minutes)
    with gr.Blocks(analytics_enabled=False) as demo:
        gr.Audio(type="filepath")
    launched = {}
    original_launch = demo.launch
    monkeypatch.setattr(
        demo, "launch", lambda **kwargs: launched.update(kwargs) or original_launch(prevent_thread_lock=True, **kwargs)
    )
    port = free_local_port()
    space.serve(demo, "127.0.0.1", port, max_minutes)
    try:
        assert launched["max_file_size"] == limit
        assert demo._queue.default_concurrency_limit == space.CONCURRENCY_LIMIT
        assert demo._queue.max_size == space.QUEUE_SIZE
        url = f"http://127.0.0.1:{port}/"
        assert post_upload(url, limit // 2) == 200
        assert post_upload(url, limit + 1024) == 413
    finally:
        demo.close()
        time.sleep(0.1)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg binary is not installed")
def test_the_space_checks_an_ffmpeg_files_header_before_decoding(tmp_path, monkeypatch):
    wav_path = tmp_path / "clip.wav"
    sf.write(wav_path, wav_at(16000, 4.0), 16000)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav_path), str(m4a)], check=True)
    decodes = []
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        decodes.append(command[0].endswith("ffmpeg"))
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(space.BadAudio, match="clip.m4a is 4.0 s long; this page scores recordings of up to 2.0 s"):
        space.read_audio(str(m4a), max_seconds=2.0)
    assert decodes == [False]  # ffprobe read the header; ffmpeg never decoded it
    waveform, rate = space.read_audio(str(m4a), max_seconds=10.0)
    assert rate == 24000 and abs(waveform.size / rate - 4.0) < 0.05
