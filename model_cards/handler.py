"""
Inference Endpoints handler for an AudioFormer audio classifier.

The Hub's hosted widget and Inference Providers do not run models that need `trust_remote_code`; an Inference
Endpoint does, through this file at the root of the model repository (Endpoints call
`EndpointHandler(path)(data)`). It needs only torch and transformers: the model code and `long_audio.py` come
with the repository.

Request body (JSON): `{"inputs": <base64 audio file | list of floats>, "parameters": {"sampling_rate": 16000,
"top_k": 5, "long_audio": "truncate" | "mean" | "max", "hop_duration": 5.0, "function_to_apply": ...}}`; raw
audio bytes (Content-Type audio/*) arrive as `{"inputs": bytes}`. Returns `[{"label": ..., "score": ...}, ...]`.

Scores are those of `long_audio.scores_from_logits`: softmax for single-label models, a sigmoid per class for
multi-label ones (0.5 = at the class's decision threshold when the checkpoint was calibrated);
`EndpointHandler(path).score_description` says which, in words (`long_audio.score_description`).
"""

import base64
import importlib.util
import logging
import os

import numpy as np
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification


logger = logging.getLogger(__name__)


def _load_long_audio(path):
    spec = importlib.util.spec_from_file_location("audioformer_long_audio", os.path.join(path, "long_audio.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class EndpointHandler:
    def __init__(self, path: str = ""):
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

    def _waveform(self, inputs, parameters):
        if isinstance(inputs, str):  # base64 of an audio file
            inputs = base64.b64decode(inputs)
        if isinstance(inputs, (bytes, bytearray)):
            from transformers.pipelines.audio_utils import ffmpeg_read  # needs the ffmpeg binary

            return ffmpeg_read(
                bytes(inputs), self.feature_extractor.sampling_rate
            ), self.feature_extractor.sampling_rate
        if isinstance(inputs, dict):
            parameters = {**parameters, "sampling_rate": inputs.get("sampling_rate", parameters.get("sampling_rate"))}
            inputs = inputs.get("raw", inputs.get("array"))
        sampling_rate = parameters.get("sampling_rate")
        if sampling_rate is None:
            raise ValueError('Raw audio needs "sampling_rate" in "parameters".')
        return np.asarray(inputs, dtype=np.float32), int(sampling_rate)

    def __call__(self, data: dict) -> list:
        inputs = data["inputs"] if isinstance(data, dict) and "inputs" in data else data
        parameters = dict(data.get("parameters") or {}) if isinstance(data, dict) else {}
        waveform, sampling_rate = self._waveform(inputs, parameters)
        scores = self.long_audio.classify_long_audio(
            self.model,
            self.feature_extractor,
            waveform,
            sampling_rate,
            long_audio=parameters.get("long_audio", "truncate"),
            hop_duration=parameters.get("hop_duration"),
            function_to_apply=parameters.get("function_to_apply"),
        )
        top_k = min(int(parameters.get("top_k", 5)), scores.numel())
        values, ids = scores.topk(top_k)
        return [{"label": self.model.config.id2label[int(i)], "score": float(v)} for v, i in zip(values, ids)]
