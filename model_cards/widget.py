"""The example of a classifier's model card widget: a seeded synthetic clip and the model's own scores on it (the
hosted widget does not run remote-code models, so these outputs are what the Hub page shows)."""

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

import audioformer.tokenization  # noqa: F401  registers AudioFormerFeatureExtractor with AutoFeatureExtractor
from audioformer.modeling_audioformer.long_audio import score_waveform


logger = logging.getLogger(__name__)

EXAMPLE_AUDIO = "example.wav"


def _example_waveform(sampling_rate: int, seconds: float = 3.0):
    """A seeded mixture of two tones and a little noise: a clip anyone can regenerate."""
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    rng = np.random.default_rng(0)
    wav = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t) + 0.05 * rng.standard_normal(t.size)
    return wav.astype(np.float32)


def widget_example(output_dir, top_k: int = 5) -> dict | None:
    """
    Writes `example.wav` into `output_dir` and returns the widget entry `{"src", "example_title", "output"}` with
    the model's top-k scores on it, or None when the model or its codec cannot be loaded here (the card then has no
    widget). The hosted widget does not run remote-code models, so these outputs are what the page shows.
    """
    try:
        fe = AutoFeatureExtractor.from_pretrained(output_dir)
        model = AutoModelForAudioClassification.from_pretrained(output_dir).eval()
        wav = _example_waveform(fe.sampling_rate)
        with torch.no_grad():
            scores = score_waveform(model, fe, wav, fe.sampling_rate)
        sf.write(Path(output_dir) / EXAMPLE_AUDIO, wav, fe.sampling_rate)
    except Exception as err:  # a card must never fail a finished training run
        logger.warning("No widget example on the card (%s: %s)", type(err).__name__, err)
        return None
    top = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:top_k]
    return {
        "src": EXAMPLE_AUDIO,
        "example_title": "Two tones and noise (synthetic, 3 s)",
        "output": [{"label": label, "score": round(score, 4)} for label, score in top],
    }
