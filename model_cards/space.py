"""
Try an AudioFormer checkpoint in a browser: a Gradio page for a saved output folder or a Hub id, on CPU, offline.

    python -m audioformer.model_cards.space demo_output               # then open http://127.0.0.1:7860
    python -m audioformer.model_cards.space ORG/NAME --port 8080      # a published checkpoint

A classifier's page takes an uploaded or recorded clip and shows its top-k labels with their scores. A recording
longer than the model's window (the feature extractor's `max_duration`) is scored in windows with
`long_audio.classify_long_audio` (the scores of the pipeline and of the Endpoints handler); the labels are the mean
(or max) over windows, and a plot shows the top labels' scores window by window. A pretraining (masked-LM)
checkpoint's page shows the clip's codes and how many of a random 25% of them the model restores. Bad input (no
audio, a file that is not audio, a recording over the page's length limit) gets a message in the page.

This file is also published, as `audioformer_space.py`, in the checkpoint's Space
(`python -m audioformer.model_cards.publish
... --space_id`), so it imports only gradio (and pandas, which gradio needs), numpy, torch, transformers,
huggingface_hub, soundfile and long_audio.
"""

import argparse
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification, AutoModelForMaskedLM


try:  # in the AudioFormer project: its own classes, registered with the Auto classes on import
    import audioformer.tokenization  # noqa: F401
    from audioformer.modeling_audioformer import long_audio

    TRUST_REMOTE_CODE = False
except ImportError:  # in a Space: the checkpoint's own code (Hub remote code); long_audio.py lies beside this file
    import long_audio

    TRUST_REMOTE_CODE = True


logger = logging.getLogger(__name__)

TOP_K = 5
# The page refuses longer recordings: 10 minutes are ~120 windows of 10 s, roughly 2 minutes on 2 CPU cores at the
# paper's size (estimated from the README's speeds: ~0.45 s of codec and ~0.6 s of model per window).
MAX_MINUTES = 10.0
# Uploads the server stores: MAX_MINUTES of 16-bit stereo WAV at 48 kHz (browsers' recording rate, most files), plus
# 1 MiB of headers: 116 MB at 10 minutes. Sized at the 384 kHz the feature extractor accepts it would be 460 MB+ per
# upload; longer or higher-rate audio fits as FLAC/OGG/MP3, and the length itself is checked from the header.
UPLOAD_SAMPLING_RATE = 48000
# Recordings scored at once (a free Space has 2 CPU cores) and requests waiting: a burst beyond is told the queue is
# full instead of holding the audio of every request in memory.
CONCURRENCY_LIMIT = 2
QUEUE_SIZE = 16
MASK_RATIO = 0.25  # share of codes masked in pretraining (paper 4.2)
MASK_SEED = 0
KINDS = ("classifier", "masked-lm", "encoder")


class BadAudio(ValueError):
    """An input the page cannot score; its message is shown in the page."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: `model` is the classifier or the masked-LM (None for a bare encoder)."""

    name: str
    kind: str  # one of KINDS
    config: object
    feature_extractor: object
    model: torch.nn.Module | None
    summary: str | None  # what the model is, from its card


def checkpoint_kind(config) -> str:
    """ "classifier", "masked-lm" or "encoder", from the head the checkpoint was saved with (`architectures`)."""
    architectures = config.architectures or []
    if any(a.endswith(("ForAudioClassification", "ForSequenceClassification")) for a in architectures):
        return "classifier"
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return "masked-lm"
    return "encoder"


def card_summary(name_or_path: str) -> str | None:
    """The first paragraph under the card's title (what the model is, trained on what), or None without a card."""
    from huggingface_hub import ModelCard

    source = Path(name_or_path) / "README.md" if Path(name_or_path).is_dir() else name_or_path
    try:
        text = ModelCard.load(source).text
    except Exception as err:  # a page without the card's summary is still a page
        logger.info("No model card for %s (%s: %s)", name_or_path, type(err).__name__, err)
        return None
    lines = text.splitlines()
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if title is None:
        return None
    paragraph = []
    for line in lines[title + 1 :]:
        if line.strip():
            if line.startswith(("#", "!", "|", "```")):
                break
            paragraph.append(line.strip())
        elif paragraph:
            break
    return " ".join(paragraph) or None


def load_checkpoint(name_or_path: str, dtype: str = "float32") -> Checkpoint:
    """Loads the config, the feature extractor (with its codec) and the model of a saved folder or a Hub id; the model
    served in `dtype` (`long_audio.cast_for_inference`: float32, bfloat16 or int8)."""
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=TRUST_REMOTE_CODE)
    if getattr(config, "model_type", None) != "audioformer":
        raise ValueError(f"{name_or_path} is not an AudioFormer checkpoint (model_type {config.model_type!r}).")
    kind = checkpoint_kind(config)
    feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, trust_remote_code=TRUST_REMOTE_CODE)
    _ = feature_extractor.codec  # loaded now: a missing codec fails at start, not on the first click
    auto_class = {"classifier": AutoModelForAudioClassification, "masked-lm": AutoModelForMaskedLM}.get(kind)
    model = None
    if auto_class is not None:
        model = auto_class.from_pretrained(name_or_path, trust_remote_code=TRUST_REMOTE_CODE).eval()
        model = long_audio.cast_for_inference(model, dtype)
    name = Path(name_or_path).resolve().name if Path(name_or_path).is_dir() else name_or_path
    return Checkpoint(name, kind, config, feature_extractor, model, card_summary(name_or_path))


def format_duration(seconds: float) -> str:
    """`75.5` -> `"1:15.5"` (m:ss), `4.25` -> `"4.2 s"`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}" if rest % 1 else f"{int(minutes)}:{int(rest):02d}"


def read_audio(path: str | None, max_seconds: float, sampling_rate: int = 24000) -> tuple[np.ndarray, int]:
    """
    An uploaded or recorded file -> (mono float32 waveform `(T,)`, its sampling rate). soundfile reads WAV, FLAC,
    OGG and MP3; other formats (a browser's WebM recording) go through ffmpeg, decoded at `sampling_rate`.
    Raises BadAudio, with a message for the page, for no file, a file that is not audio, no samples, NaN/Inf, or a
    recording over `max_seconds`: checked from the header before decoding (soundfile's, or ffprobe's where the
    container states a duration), and ffmpeg decodes no more than `max_seconds` + 1 s in any case.
    """
    import soundfile as sf

    if not path:
        raise BadAudio("No audio yet: upload a file or record a clip first.")
    name = Path(path).name
    try:
        info = sf.info(path)
    except sf.SoundFileError:  # a format libsndfile does not know (or not audio): ffmpeg may read it
        info = None
    if info is not None:
        _check_duration(name, info.frames / info.samplerate, max_seconds)
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        waveform = audio.mean(axis=1)
    else:
        waveform, rate = _read_with_ffmpeg(path, name, sampling_rate, max_seconds), sampling_rate
    if waveform.size == 0:
        raise BadAudio(f"{name} holds no audio (0 samples): record or upload a longer clip.")
    if not np.isfinite(waveform).all():
        raise BadAudio(f"{name} contains NaN or infinite samples.")
    return np.ascontiguousarray(waveform, dtype=np.float32), int(rate)


def max_upload_bytes(max_minutes: float) -> int:
    """Gradio's `max_file_size` for a page scoring up to `max_minutes`: that much 16-bit stereo at 48 kHz + 1 MiB."""
    return int(math.ceil(max_minutes * 60 * UPLOAD_SAMPLING_RATE * 2 * 2)) + 2**20


def serve(demo, host: str, port: int, max_minutes: float = MAX_MINUTES):
    """Serves `demo` with bounded work: at most `CONCURRENCY_LIMIT` requests scored at once, `QUEUE_SIZE` waiting,
    uploads of at most `max_upload_bytes(max_minutes)`."""
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)
    demo.launch(server_name=host, server_port=port, max_file_size=max_upload_bytes(max_minutes))


def _check_duration(name: str, seconds: float, max_seconds: float):
    if seconds > max_seconds:
        raise BadAudio(
            f"{name} is {format_duration(seconds)} long; this page scores recordings of up to "
            f"{format_duration(max_seconds)}. Cut it shorter, or score it in Python with "
            "`long_audio.classify_long_audio`, which has no length limit "
            "(locally, `python -m audioformer.model_cards.space` "
            "takes `--max_minutes`)."
        )


def _read_with_ffmpeg(path: str, name: str, sampling_rate: int, max_seconds: float) -> np.ndarray:
    import shutil
    import subprocess

    if os.path.getsize(path) == 0:
        raise BadAudio(f"{name} is empty (0 bytes): record or upload a clip.")
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None:
        raise BadAudio(
            f"Could not read {name} as audio: soundfile does not know its format and ffmpeg is not installed. "
            "Upload a WAV, FLAC, OGG or MP3 file."
        )
    if ffprobe is not None:  # the container's own duration, before decoding anything (a WebM recording may have none)
        probe = [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path]
        stated = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
        try:
            stated_seconds = float(stated)
        except ValueError:  # "N/A" or nothing: no duration in the header
            stated_seconds = None
        if stated_seconds is not None:
            _check_duration(name, stated_seconds, max_seconds)
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", path, "-t", f"{max_seconds + 1:.3f}", "-ac", "1"]
    command += ["-ar", str(sampling_rate), "-f", "f32le", "pipe:1"]
    proc = subprocess.run(command, capture_output=True)
    if proc.returncode != 0:
        raise BadAudio(
            f"Could not read {name} as audio: soundfile does not know its format and ffmpeg cannot decode it."
        )
    waveform = np.frombuffer(proc.stdout, dtype=np.float32)
    _check_duration(name, waveform.size / sampling_rate, max_seconds)
    return waveform


def window_spans(num_samples: int, sampling_rate: int, max_duration: float, hop_duration: float) -> np.ndarray:
    """`(W, 2)` start and end sample of each window, the windows of `long_audio.split_audio` (same rounding)."""
    window = int(round(max_duration * sampling_rate))
    hop = max(1, int(round(hop_duration * sampling_rate)))
    return np.array(long_audio.sliding_windows(num_samples, window, hop), dtype=np.int64).reshape(-1, 2)


@dataclass
class Classification:
    """The scores of one recording: per window and aggregated over its windows."""

    labels: list[str]  # label names by id
    scores: np.ndarray  # (L,) the recording's scores: `aggregation` of the window scores
    window_scores: np.ndarray  # (W, L)
    window_times: np.ndarray  # (W,) centre of each window, seconds
    aggregation: str  # "mean" | "max"
    seconds: float  # length of the recording
    window_seconds: float
    hop_seconds: float

    def top(self, k: int) -> dict[str, float]:
        """`{label: score}` of the k highest scores, highest first."""
        order = np.argsort(-self.scores, kind="stable")[:k]
        return {self.labels[i]: float(self.scores[i]) for i in order}


def classify(
    checkpoint: Checkpoint,
    waveform: np.ndarray,
    sampling_rate: int,
    aggregation: str = "mean",
    hop_duration: float | None = None,
    progress=None,
) -> Classification:
    """
    Scores a mono recording `(T,)` window by window: windows of `max_duration` seconds every `hop_duration`
    (default half a window, as in `long_audio`), each scored by `long_audio.classify_long_audio` (so with the
    checkpoint's score semantics), then aggregated by `aggregation` ("mean" or "max") like the pipeline's
    `long_audio=` option. A recording no longer than a window is one window. `progress((done, total), desc=...)`
    is called after each window (a `gr.Progress` fits).
    """
    model, fe = checkpoint.model, checkpoint.feature_extractor
    if aggregation not in ("mean", "max"):
        raise ValueError(f"aggregation must be 'mean' or 'max', got {aggregation!r}.")
    hop_duration = fe.max_duration / 2 if hop_duration is None else hop_duration
    clips = long_audio.split_audio(waveform, sampling_rate, fe.max_duration, aggregation, hop_duration)
    spans = window_spans(waveform.shape[-1], sampling_rate, fe.max_duration, hop_duration)
    scores = []
    for i, clip in enumerate(clips):
        scores.append(long_audio.classify_long_audio(model, fe, clip, sampling_rate, long_audio="truncate"))
        if progress is not None:
            progress((i + 1, len(clips)), desc="Scoring windows", unit="windows")
    window_scores = torch.stack(scores)
    return Classification(
        labels=[checkpoint.config.id2label[i] for i in range(window_scores.shape[-1])],
        scores=long_audio.aggregate(window_scores, aggregation).numpy(),
        window_scores=window_scores.numpy(),
        window_times=spans.mean(axis=1) / sampling_rate,
        aggregation=aggregation,
        seconds=waveform.shape[-1] / sampling_rate,
        window_seconds=fe.max_duration,
        hop_seconds=hop_duration,
    )


def time_plot_data(result: Classification, top_k: int):
    """
    The plot of a long recording: a pandas DataFrame with one row per window and top-k label (of the whole
    recording), columns `time` (window centre, s), `label`, `score`; None for a recording of one window.
    """
    import pandas as pd

    if len(result.window_times) < 2:
        return None
    rows = []
    for label in result.top(top_k):
        i = result.labels.index(label)
        rows += [
            {"time": float(t), "label": label, "score": float(s)}
            for t, s in zip(result.window_times, result.window_scores[:, i])
        ]
    return pd.DataFrame(rows, columns=["time", "label", "score"])


def classification_message(result: Classification) -> str:
    """One line saying what was scored."""
    if len(result.window_times) == 1:
        return f"Scored {format_duration(result.seconds)} of audio in one window."
    return (
        f"Scored {format_duration(result.seconds)} of audio in {len(result.window_times)} windows of "
        f"{result.window_seconds:g} s every {result.hop_seconds:g} s; the labels are the {result.aggregation} of "
        "the window scores, the plot shows them window by window."
    )


def classifier_outputs(
    checkpoint: Checkpoint,
    path: str | None,
    aggregation: str = "mean",
    top_k: int = TOP_K,
    max_seconds: float = MAX_MINUTES * 60,
    progress=None,
) -> tuple[str, dict | None, object]:
    """
    What the classifier page shows for an uploaded file: (message, `{label: score}` of the top k or None, plot
    DataFrame or None). Bad input and unexpected failures become a message, never an exception.
    """
    try:
        if progress is not None:
            progress(0, desc="Reading audio")
        waveform, sampling_rate = read_audio(path, max_seconds, checkpoint.feature_extractor.sampling_rate)
        result = classify(checkpoint, waveform, sampling_rate, aggregation, progress=progress)
    except BadAudio as err:
        return f"**{err}**", None, None
    except Exception as err:  # the page shows a message, the log keeps the traceback
        logger.exception("Classifying %s failed", path)
        return f"**Something went wrong while scoring this file ({type(err).__name__}: {err}).**", None, None
    return classification_message(result), result.top(top_k), time_plot_data(result, top_k)


@dataclass
class MaskedCodes:
    """A clip's codes in the model's codebook row, a random share of them masked, and the model's guesses."""

    codes: np.ndarray  # (F,) codes 0..1023 of the clip's F frames
    masked: np.ndarray  # (F,) bool
    predicted: np.ndarray  # (F,) the model's code at each masked frame (-1 where it predicted a special token)
    codebook_row: int  # 0 = C1

    @property
    def num_masked(self) -> int:
        return int(self.masked.sum())

    @property
    def accuracy(self) -> float:
        """Share of masked codes restored exactly."""
        return float((self.predicted[self.masked] == self.codes[self.masked]).mean())


@torch.no_grad()
def restore_masked_codes(
    checkpoint: Checkpoint, waveform: np.ndarray, sampling_rate: int, mask_ratio: float = MASK_RATIO, seed: int = 0
) -> MaskedCodes:
    """
    Encodes the clip (its first `max_duration` seconds), replaces `mask_ratio` of the codes of the model's codebook
    row by `<MASK>` (positions drawn with `seed`) and lets the masked-LM predict them (argmax over the vocabulary).
    A fused model (several codebooks per frame) has whole frames masked in every codebook; the page shows its first
    codebook (`codebook_index`).
    """
    config, fe = checkpoint.config, checkpoint.feature_extractor
    inputs = fe(waveform, sampling_rate=sampling_rate, return_tensors="pt")
    row = inputs["input_ids"][0, config.codebook_index]  # (L,) <BOA> codes <EOA> <PAD>...
    special = torch.tensor([config.bos_token_id, config.eos_token_id, config.pad_token_id, config.mask_token_id])
    positions = torch.nonzero(~torch.isin(row, special) & inputs["attention_mask"][0].bool()).squeeze(1)
    generator = torch.Generator().manual_seed(seed)
    num_masked = max(1, int(round(mask_ratio * len(positions))))
    chosen = positions[torch.randperm(len(positions), generator=generator)[:num_masked]]
    if getattr(config, "input_codebooks", None):
        masked_rows = inputs["input_ids"][0].clone()  # (K, L): the frame in every codebook, else they give it away
        masked_rows[:, chosen] = config.mask_token_id
        logits = checkpoint.model(input_ids=masked_rows[None], attention_mask=inputs["attention_mask"]).logits[0]
        logits = logits[:, 0]  # (L, K_in, V) -> (L, V): the first input codebook, `codebook_index`
    else:
        masked_row = row.clone()
        masked_row[chosen] = config.mask_token_id
        logits = checkpoint.model(input_ids=masked_row[None], attention_mask=inputs["attention_mask"]).logits[0]
    predicted_ids = logits.argmax(-1)
    is_code = (predicted_ids >= fe.code_offset) & (predicted_ids < config.mask_token_id)
    predicted = torch.where(is_code, predicted_ids - fe.code_offset, torch.full_like(predicted_ids, -1))
    masked = torch.zeros_like(row, dtype=torch.bool)
    masked[chosen] = True
    return MaskedCodes(
        codes=(row[positions] - fe.code_offset).numpy(),
        masked=masked[positions].numpy(),
        predicted=torch.where(masked, predicted, torch.full_like(predicted, -1))[positions].numpy(),
        codebook_row=int(config.codebook_index),
    )


def highlighted_codes(result: MaskedCodes) -> list[tuple[str, str | None]]:
    """`gr.HighlightedText` value: every code in order; masked ones as `true→guess`, "restored" or "missed"."""
    out = []
    for code, masked, guess in zip(result.codes, result.masked, result.predicted):
        if not masked:
            out.append((f"{code} ", None))
        else:
            out.append((f"{code}→{guess if guess >= 0 else '?'}", "restored" if guess == code else "missed"))
            out.append((" ", None))
    return out


def masked_lm_outputs(
    checkpoint: Checkpoint, path: str | None, max_seconds: float = MAX_MINUTES * 60
) -> tuple[str, list | None]:
    """What the pretraining page shows: (message, `gr.HighlightedText` value or None)."""
    try:
        waveform, sampling_rate = read_audio(path, max_seconds, checkpoint.feature_extractor.sampling_rate)
        result = restore_masked_codes(checkpoint, waveform, sampling_rate, seed=MASK_SEED)
    except BadAudio as err:
        return f"**{err}**", None
    except Exception as err:  # the page shows a message, the log keeps the traceback
        logger.exception("Masking %s failed", path)
        return f"**Something went wrong with this file ({type(err).__name__}: {err}).**", None
    max_duration = checkpoint.feature_extractor.max_duration
    chance = checkpoint.config.mask_token_id - checkpoint.feature_extractor.code_offset  # codebook size
    seconds = waveform.shape[-1] / sampling_rate
    used = f"its first {max_duration:g} s" if seconds > max_duration else f"all {format_duration(seconds)}"
    message = (
        f"Masked {result.num_masked} of the {len(result.codes)} codes of codebook C{result.codebook_row + 1} "
        f"({MASK_RATIO:.0%}, drawn with seed {MASK_SEED}) from {used} of the clip: the model restored "
        f"**{result.accuracy:.1%}** of them exactly (chance: 1 in {chance})."
    )
    return message, highlighted_codes(result)


def codec_name(feature_extractor) -> str:
    """The codec's Hub id, or a local codec's path as typed from here (relative when it is below this folder)."""
    name = feature_extractor.codec_name_or_path
    if Path(name).is_dir() and not os.path.relpath(name).startswith(".."):
        return os.path.relpath(name)
    return name


def reads_text(config) -> str:
    """ "codebook C1", or a fused model's "codebooks C1 + C2 + C3 + C4 (summed per frame)"."""
    if not getattr(config, "input_codebooks", None):
        return f"codebook C{config.codebook_index + 1}"
    return f"codebooks {' + '.join(f'C{k + 1}' for k in config.input_codebooks)} (summed per frame)"


def describe(checkpoint: Checkpoint) -> str:
    """Markdown: what the model is, which codec it reads, and what the page's numbers mean."""
    config, fe = checkpoint.config, checkpoint.feature_extractor
    kind = {
        "classifier": f"an audio classifier with {config.num_labels} labels",
        "masked-lm": "a pretraining (masked code modelling) checkpoint",
        "encoder": "an encoder without a head",
    }[checkpoint.kind]
    lines = [checkpoint.summary or f"`{checkpoint.name}` is an AudioFormer checkpoint: {kind}."]
    frames = f", {fe.sampling_rate / fe.hop_length:g} frames/s" if getattr(fe, "hop_length", None) else ""
    lines.append(
        f"**Codec.** The audio is resampled to {fe.sampling_rate} Hz and encoded by the EnCodec model "
        f"`{codec_name(fe)}` at {fe.bandwidth:g} kbps ({fe.num_codebooks} codebooks{frames}); the model "
        f"reads {reads_text(config)} and sees {fe.max_duration:g} s at a time."
    )
    if checkpoint.kind == "classifier":
        scores = long_audio.score_description(config)
        lines.append(
            f"**Scores.** {scores[:1].upper()}{scores[1:]} A recording "
            f"longer than {fe.max_duration:g} s is scored in windows of {fe.max_duration:g} s every "
            f"{fe.max_duration / 2:g} s: the labels are the mean (or max) over windows, and the plot shows each "
            "top label's score window by window. Scores are not calibrated probabilities."
        )
    elif checkpoint.kind == "masked-lm":
        lines.append(
            "**This is a pretraining checkpoint: it has no classifier.** The page masks a random "
            f"{MASK_RATIO:.0%} of the clip's codes and shows how many the model restores, as in its training. "
            "Fine-tune it with `run_classification.py` for labels."
        )
    else:
        lines.append(
            "**This checkpoint has no classifier and no masked-LM head**, so there is nothing to score here. "
            "Fine-tune it with `run_classification.py` for labels."
        )
    return "\n\n".join(lines)


def build_demo(name_or_path: str, top_k: int = TOP_K, max_minutes: float = MAX_MINUTES, dtype: str = "float32"):
    """The Gradio page (`gr.Blocks`) of a checkpoint; `demo.launch()` serves it."""
    import gradio as gr

    checkpoint = load_checkpoint(name_or_path, dtype)
    max_seconds = max_minutes * 60

    def run_classifier(path, aggregation, progress=gr.Progress()):  # noqa: B008  Gradio injects the tracker
        message, labels, plot = classifier_outputs(checkpoint, path, aggregation, top_k, max_seconds, progress)
        return message, labels, gr.update(value=plot, visible=plot is not None)

    def run_masked_lm(path):
        return masked_lm_outputs(checkpoint, path, max_seconds)

    with gr.Blocks(title=f"AudioFormer: {checkpoint.name}", analytics_enabled=False) as demo:
        gr.Markdown(f"# AudioFormer: {checkpoint.name}")
        gr.Markdown(describe(checkpoint), elem_id="model-description")
        if checkpoint.kind == "encoder":
            return demo
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="Audio: upload or record", elem_id="audio"
                )
                if checkpoint.kind == "classifier":
                    aggregation = gr.Radio(
                        [("mean", "mean"), ("max", "max")],
                        value="mean",
                        label="Labels of a long recording: over its windows, take the",
                        elem_id="aggregation",
                    )
                button = gr.Button(
                    "Classify" if checkpoint.kind == "classifier" else "Mask and restore",
                    variant="primary",
                    elem_id="run",
                )
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                if checkpoint.kind == "classifier":
                    labels = gr.Label(num_top_classes=top_k, label=f"Top {top_k} labels", elem_id="labels")
                    plot = gr.LinePlot(
                        x="time",
                        y="score",
                        color="label",
                        x_title="time (s, window centre)",
                        y_lim=None if long_audio.default_function(checkpoint.config) == "none" else [0, 1],
                        label="Scores over time (top labels, one point per window)",
                        visible=False,
                        elem_id="time-plot",
                    )
                    handler, inputs, outputs = run_classifier, [audio, aggregation], [message, labels, plot]
                else:
                    codes = gr.HighlightedText(
                        label=f"Codes of codebook C{checkpoint.config.codebook_index + 1}: masked ones as true→guess",
                        color_map={"restored": "green", "missed": "red"},
                        show_legend=True,
                        elem_id="codes",
                    )
                    handler, inputs, outputs = run_masked_lm, [audio], [message, codes]
        for event in (button.click, audio.upload, audio.stop_recording):
            event(handler, inputs, outputs)
    return demo


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m audioformer.model_cards.space",
        description="Serve a Gradio page that runs an AudioFormer checkpoint on uploaded or recorded audio.",
    )
    parser.add_argument("model", help="a folder saved by run_classification.py / run_mlm.py, or a Hub id ORG/NAME")
    parser.add_argument("--top_k", type=int, default=TOP_K, help="labels shown (default %(default)s)")
    parser.add_argument(
        "--max_minutes", type=float, default=MAX_MINUTES, help="longest recording scored (default %(default)s)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default %(default)s)")
    parser.add_argument("--port", type=int, default=7860, help="port (default %(default)s)")
    parser.add_argument(
        "--dtype",
        choices=long_audio.INFERENCE_DTYPES,
        default="float32",
        help="precision the model runs in (default %(default)s; int8 on CPU only; docs/serving-speed.md)",
    )
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top_k must be at least 1, got {args.top_k}")
    if args.max_minutes <= 0:
        parser.error(f"--max_minutes must be positive, got {args.max_minutes}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    demo = build_demo(args.model, top_k=args.top_k, max_minutes=args.max_minutes, dtype=args.dtype)
    serve(demo, args.host, args.port, args.max_minutes)


if __name__ == "__main__":
    main()
