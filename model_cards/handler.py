"""
Inference Endpoints handler for an AudioFormer audio classifier.

The Hub's hosted widget and Inference Providers do not run models that need `trust_remote_code`; an Inference
Endpoint does, through this file at the root of the model repository (Endpoints call
`EndpointHandler(path)(data)`). It needs only torch and transformers: the model code and `long_audio.py` come
with the repository.

Request body (JSON): `{"inputs": <base64 audio file | list of floats>, "parameters": {"sampling_rate": 16000,
"top_k": 5, "long_audio": "truncate" | "mean" | "max", "hop_duration": 5.0, "function_to_apply": ...}}`; raw
audio bytes (Content-Type audio/*) arrive as `{"inputs": bytes}`. Returns `[{"label": ..., "score": ...}, ...]`.
`top_k` is 1 to the number of labels (null: all of them); a missing field, an unknown parameter or value, a
sampling rate that is not a whole number of Hz (1 kHz to 384 kHz) is refused with a message saying what is valid.

Audio files are decoded by soundfile (WAV, FLAC, OGG, MP3 and the other formats of libsndfile), without ffmpeg;
other formats (WebM, M4A/AAC, ...) by the ffmpeg binary where the image has it. A request holds at most
`MAX_MINUTES` minutes of audio (10, like the demo Space): set the Endpoint's environment variable
`AUDIOFORMER_MAX_MINUTES`, or pass `EndpointHandler(path, max_minutes=...)`, to change it. An encoded file's length
is checked from its header before it is decoded, and ffmpeg decodes no more than the limit.

Scores are those of `long_audio.scores_from_logits`: softmax for single-label models, a sigmoid per class for
multi-label ones (0.5 = at the class's decision threshold when the checkpoint was calibrated);
`EndpointHandler(path).score_description` says which, in words (`long_audio.score_description`).

Precision: the endpoint's environment variable `AUDIOFORMER_DTYPE` (or `EndpointHandler(path, dtype=...)`) is one of
`float32` (default), `bfloat16`, `int8` (CPU only): `long_audio.cast_for_inference`. `AUDIOFORMER_ONNX` (or `onnx=`),
the path of a `model.onnx` written by `export_onnx` (relative to the repository), runs the model with onnxruntime.
"""

import base64
import binascii
import importlib.util
import io
import logging
import math
import os
import shutil
import subprocess

import numpy as np
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification


logger = logging.getLogger(__name__)

TOP_K = 5
# The longest request, in minutes of audio, unless the environment variable or `max_minutes` says otherwise: 10
# minutes are ~120 windows of 10 s with long_audio="mean" (about 2 minutes of CPU at the paper's size).
MAX_MINUTES = 10.0
MAX_MINUTES_ENV = "AUDIOFORMER_MAX_MINUTES"
PARAMETERS = ("sampling_rate", "top_k", "long_audio", "hop_duration", "function_to_apply")
FFMPEG_FORMATS = "WebM, M4A/AAC, MP4, Opus in WebM/Matroska, WMA and the other formats libsndfile does not read"


def max_minutes_from(max_minutes=None) -> float:
    """`max_minutes` if given, else `$AUDIOFORMER_MAX_MINUTES`, else `MAX_MINUTES`: a positive number of minutes."""
    source = "max_minutes"
    if max_minutes is None:
        max_minutes, source = os.environ.get(MAX_MINUTES_ENV), MAX_MINUTES_ENV
        if max_minutes is None:
            return MAX_MINUTES
    try:
        value = float(max_minutes)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(max_minutes, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{source} must be a positive number of minutes, got {max_minutes!r}.")
    return value


def check_duration(seconds: float, max_seconds: float):
    if seconds > max_seconds:
        raise ValueError(
            f"The audio is {seconds:.1f} s long; this endpoint scores at most {max_seconds:g} s "
            f"({max_seconds / 60:g} minutes). Send a shorter recording, or raise the limit with the Endpoint's "
            f"environment variable {MAX_MINUTES_ENV} (minutes) or EndpointHandler(path, max_minutes=...)."
        )


def decode_audio(payload: bytes, sampling_rate: int, max_seconds: float) -> tuple[np.ndarray, int]:
    """
    An audio file's bytes -> (mono float32 waveform `(T,)`, its rate). soundfile first (its header's length is checked
    before decoding); other formats through ffmpeg at `sampling_rate`, decoding at most `max_seconds` + 1 s.
    """
    if not payload:
        raise ValueError('"inputs" is empty: send an audio file (WAV, FLAC, OGG, MP3) or a list of samples.')
    try:
        import soundfile as sf
    except ImportError:  # an image without soundfile: ffmpeg reads everything it can
        sf = None
    if sf is not None:
        try:
            info = sf.info(io.BytesIO(payload))
        except Exception:  # not a format of libsndfile (or not audio): ffmpeg may read it
            info = None
        if info is not None and info.samplerate > 0:
            check_duration(info.frames / info.samplerate, max_seconds)
            audio, rate = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
            check_duration(audio.shape[0] / rate, max_seconds)
            return audio.mean(axis=1), int(rate)
    return ffmpeg_decode(payload, sampling_rate, max_seconds), sampling_rate


def ffmpeg_decode(payload: bytes, sampling_rate: int, max_seconds: float) -> np.ndarray:
    """Decodes with the ffmpeg binary to mono float32 at `sampling_rate`, no more than `max_seconds` + 1 s of it."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ValueError(
            "soundfile cannot read this audio (it reads WAV, FLAC, OGG and MP3) and ffmpeg, which decodes the other "
            f"formats ({FFMPEG_FORMATS}), is not installed in this Endpoint's image. Send WAV, FLAC, OGG or MP3, "
            'or the samples as a list with "parameters": {"sampling_rate": ...}.'
        )
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-t", f"{max_seconds + 1:.3f}"]
    command += ["-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "pipe:1"]
    proc = subprocess.run(command, input=payload, capture_output=True)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise ValueError(f"Could not decode the audio: neither soundfile nor ffmpeg reads it ({reason[0]}).")
    audio = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if audio.size == 0:
        raise ValueError("The audio file holds no samples.")
    check_duration(audio.size / sampling_rate, max_seconds)
    return audio


def whole_number(value, name: str) -> int:
    """`value` as an int, refusing booleans, strings and numbers with a fraction (JSON has no int type)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def _load_long_audio(path):
    spec = importlib.util.spec_from_file_location("audioformer_long_audio", os.path.join(path, "long_audio.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class EndpointHandler:
    def __init__(
        self, path: str = "", max_minutes: float | None = None, dtype: str | None = None, onnx: str | None = None
    ):
        self.max_seconds = 60 * max_minutes_from(max_minutes)
        self.long_audio = _load_long_audio(path)
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(path, trust_remote_code=True)
        self.model = AutoModelForAudioClassification.from_pretrained(path, trust_remote_code=True).eval()
        self.score_description = self.long_audio.score_description(self.model.config)
        logger.info("Scores: %s", self.score_description)
        try:
            import torch

            if torch.cuda.is_available():
                self.model.to("cuda")
                self.feature_extractor.to("cuda")
        except Exception:
            pass
        dtype = dtype or os.environ.get("AUDIOFORMER_DTYPE", "float32")
        self.model = self.long_audio.cast_for_inference(self.model, dtype)
        onnx = onnx or os.environ.get("AUDIOFORMER_ONNX")
        if onnx:
            self.model = self.long_audio.OnnxAudioClassifier(os.path.join(path, onnx), self.model.config)

    def _waveform(self, inputs, parameters):
        if isinstance(inputs, str):  # base64 of an audio file
            try:
                inputs = base64.b64decode(inputs, validate=True)
            except (binascii.Error, ValueError) as err:
                raise ValueError(
                    f'"inputs" is a string but not base64 ({err}): send an audio file in base64, or raw bytes.'
                ) from err
        if isinstance(inputs, (bytes, bytearray)):
            return decode_audio(bytes(inputs), self.feature_extractor.sampling_rate, self.max_seconds)
        if isinstance(inputs, dict):
            if not ("raw" in inputs or "array" in inputs):
                raise ValueError(
                    'A dict in "inputs" needs the samples as "raw" (or "array") and their "sampling_rate".'
                )
            parameters = {**parameters, "sampling_rate": inputs.get("sampling_rate", parameters.get("sampling_rate"))}
            inputs = inputs["raw"] if "raw" in inputs else inputs["array"]
        sampling_rate = parameters.get("sampling_rate")
        if sampling_rate is None:
            raise ValueError('Raw audio needs "sampling_rate" in "parameters".')
        sampling_rate = whole_number(sampling_rate, "sampling_rate")
        if sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive number of Hz, got {sampling_rate}.")
        try:
            waveform = np.asarray(inputs, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f'"inputs" must be a list of numbers (mono samples), base64 or bytes: {err}') from err
        check_duration(waveform.shape[-1] / sampling_rate if waveform.ndim else 0.0, self.max_seconds)
        return waveform, sampling_rate

    def _parameters(self, data) -> dict:
        """The request's parameters, checked before any audio is decoded."""
        if not isinstance(data, dict) or "inputs" not in data:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f'The request has no "inputs" (got {keys}): send {{"inputs": <base64 audio file or list of samples>, '
                '"parameters": {...}}.'
            )
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError(f'"parameters" must be an object, got {type(parameters).__name__}.')
        unknown = sorted(set(parameters) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"Unknown parameter(s) {unknown}: valid ones are {list(PARAMETERS)}.")
        num_labels = self.model.config.num_labels
        top_k = parameters.get("top_k", TOP_K)
        if top_k is None:  # as transformers' pipeline: all labels
            top_k = num_labels
        elif "top_k" in parameters:
            top_k = whole_number(top_k, "top_k")
            if not 1 <= top_k <= num_labels:
                raise ValueError(f"top_k must be from 1 to {num_labels} (the model's number of labels), got {top_k}.")
        long_audio = parameters.get("long_audio", "truncate")
        if long_audio not in self.long_audio.AGGREGATIONS:
            raise ValueError(f"long_audio must be one of {list(self.long_audio.AGGREGATIONS)}, got {long_audio!r}.")
        function_to_apply = parameters.get("function_to_apply")
        if function_to_apply is not None and function_to_apply not in self.long_audio.FUNCTIONS:
            raise ValueError(
                f"function_to_apply must be one of {list(self.long_audio.FUNCTIONS)}, got {function_to_apply!r}."
            )
        return {
            **parameters,
            "top_k": min(top_k, num_labels),
            "long_audio": long_audio,
            "function_to_apply": function_to_apply,
        }

    def __call__(self, data: dict) -> list:
        parameters = self._parameters(data)
        waveform, sampling_rate = self._waveform(data["inputs"], parameters)
        scores = self.long_audio.classify_long_audio(
            self.model,
            self.feature_extractor,
            waveform,
            sampling_rate,
            long_audio=parameters["long_audio"],
            hop_duration=parameters.get("hop_duration"),
            function_to_apply=parameters["function_to_apply"],
        )
        values, ids = scores.topk(parameters["top_k"])
        return [{"label": self.model.config.id2label[int(i)], "score": float(v)} for v, i in zip(values, ids)]
