"""
Classifying audio longer than the model's `max_duration` (10 s in the paper), and the audio-classification
pipeline that does it.

The paper truncates every clip to 10 s, and so does the feature extractor: that stays the default
(`long_audio="truncate"`). With `long_audio="mean"` or `"max"` the audio is cut into windows of `max_duration`
seconds every `hop_duration` seconds, each window is scored like a clip, and the window scores (after softmax or
sigmoid) are averaged or max-pooled per label: `mean` for "what is this recording about", `max` for "does this
sound occur anywhere" (AudioSet-style tagging of long recordings).

What a score means is decided here, once (`default_function`, `scores_from_logits`, `score_description`): softmax
for single-label models, a sigmoid per class for multi-label ones. A multi-label checkpoint of `run_classification.py`
is calibrated: its per-class decision thresholds (fitted on the validation split) are folded into the classifier's
bias, so 0.5 is each class's decision threshold for this code and for transformers' stock pipeline alike (an
LSEP-trained model's logits have no absolute scale, so an uncalibrated sigmoid would be meaningless there).

This file is also published with the checkpoints (Inference Endpoints `handler.py` imports it), so it imports only
numpy, torch and transformers.

    >>> from transformers import pipeline
    >>> pipeline_class = AudioFormerAudioClassificationPipeline
    >>> classifier = pipeline("audio-classification", model=path, pipeline_class=pipeline_class)
    >>> classifier({"raw": audio, "sampling_rate": 16000}, long_audio="max", hop_duration=5.0, top_k=3)
"""

import warnings

import numpy as np
import torch
from transformers import AudioClassificationPipeline


# What a published folder's `config.json` declares (transformers' `custom_pipelines`, see `model_cards/card.py`) so
# that `pipeline("audio-classification", model=repo, trust_remote_code=True)` runs the class below from the
# folder's copy of this file: any sampling rate without torchaudio, long audio.
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "long_audio.AudioFormerAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}

AGGREGATIONS = ("truncate", "mean", "max")
FUNCTIONS = ("softmax", "sigmoid", "none")
# Windows encoded (codec) and classified (model) at once: an hour of audio is ~700 windows, too many for one batch.
WINDOW_BATCH_SIZE = 8
# The smallest hop, as a share of the window: closer windows repeat the same audio at the cost of a window each
# (hop_duration=0.0001 on a 2 s clip was 8,000 windows).
MIN_HOP_FRACTION = 0.1
# Windows scored for one recording unless the caller passes `max_windows`: ~1 s of CPU each at the paper's size, so
# about a quarter of an hour of work; 10 minutes of audio at the smallest hop (591 windows) fit.
MAX_WINDOWS = 1000
# What `cast_for_inference` serves a model in (the pipeline's `inference_dtype`, the `--dtype` of the Space and the
# HEAR API, the Endpoints handler's `AUDIOFORMER_DTYPE`); docs/serving-speed.md says which to pick.
INFERENCE_DTYPES = ("float32", "bfloat16", "int8")


def sliding_windows(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """
    `(start, end)` sample ranges of windows of `window` samples every `hop` samples that cover `[0, num_samples)`.
    The last window ends at `num_samples` (it may be shorter only when the whole audio is shorter than a window).
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive sample counts, got window={window}, hop={hop}.")
    if num_samples <= window:
        return [(0, num_samples)]
    starts = list(range(0, num_samples - window, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)  # one last window flush with the end, so nothing is dropped
    return [(s, s + window) for s in starts]


def _field(config, name: str):
    """A field of a config object or of a `config.json` dict (the model card reads the file)."""
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def default_function(config) -> str:
    """softmax for single-label models, sigmoid (labels scored independently) for multi-label ones."""
    if _field(config, "problem_type") == "multi_label_classification":
        return "sigmoid"
    if _field(config, "problem_type") == "regression":
        return "none"
    return "softmax"


def scores_from_logits(logits: torch.Tensor, function_to_apply: str) -> torch.Tensor:
    """logits `(W, L)` -> scores `(W, L)`: `"softmax"`, `"sigmoid"` (each label on its own) or `"none"` (logits)."""
    if function_to_apply not in FUNCTIONS:
        raise ValueError(f"function_to_apply must be one of {FUNCTIONS}, got {function_to_apply!r}.")
    logits = logits.float()
    if function_to_apply == "softmax":
        return logits.softmax(-1)
    if function_to_apply == "sigmoid":
        return logits.sigmoid()
    return logits


def score_description(config) -> str:
    """One or two sentences saying what this checkpoint's scores mean, for the model card, the Inference Endpoints
    handler and the demo Space. `config` is the model's config (or the `config.json` dict)."""
    function = default_function(config)
    if function == "softmax":
        return (
            "Scores are softmax probabilities over the classes: they sum to 1 for each clip, and the top score is "
            "the predicted class."
        )
    if function == "none":
        return "Scores are the raw regression outputs of the model."
    thresholds = _field(config, "decision_thresholds")
    loss = _field(config, "multi_label_loss") or "lsep"
    if thresholds is not None:
        return (
            "Each class is scored on its own as sigmoid(logit). A decision threshold per class was calibrated on the "
            "validation split and folded into the classifier (`decision_thresholds` in config.json records them): a "
            "score above 0.5 means the class is predicted present, 0.5 is exactly at its threshold. Scores order the "
            "classes and the clips, but they are not calibrated probabilities."
        )
    if loss == "bce":
        return (
            "Each class is scored on its own as sigmoid(logit), the model's estimate of the probability that the "
            "class is present (trained with binary cross-entropy). No decision thresholds were calibrated for this "
            "checkpoint, so 0.5 is only the default decision point."
        )
    return (
        "Each class is scored on its own as sigmoid(logit), but this checkpoint was trained with LSEP, which fixes "
        "only the order of the logits within a clip, and it has no calibrated decision thresholds: compare scores "
        "between the classes of one clip only; no fixed cut-off (0.5 or any other) is meaningful."
    )


def aggregate(scores: torch.Tensor, how: str) -> torch.Tensor:
    """Window scores `(W, L)` -> recording scores `(L,)` by `"mean"` or `"max"` over windows."""
    if how == "max":
        return scores.max(dim=0).values
    if how in ("mean", "truncate"):  # "truncate" has a single window
        return scores.mean(dim=0)
    raise ValueError(f"long_audio must be one of {AGGREGATIONS}, got {how!r}.")


def split_audio(
    waveform: np.ndarray,
    sampling_rate: int,
    max_duration: float,
    long_audio: str = "truncate",
    hop_duration: float | None = None,
    max_windows: int | None = MAX_WINDOWS,
) -> list[np.ndarray]:
    """
    Mono waveform `(T,)` -> the list of clips to score: one (truncated by the feature extractor) or windows of
    `max_duration` s every `hop_duration` s (default half a window, at least `MIN_HOP_FRACTION` of it), at most
    `max_windows` of them (None: no limit). Bounds are refused with a ValueError that says how to change them.
    """
    if long_audio not in AGGREGATIONS:
        raise ValueError(f"long_audio must be one of {AGGREGATIONS}, got {long_audio!r}.")
    if long_audio == "truncate":
        return [waveform]
    hop_duration = max_duration / 2 if hop_duration is None else hop_duration
    if (
        isinstance(hop_duration, bool)
        or not isinstance(hop_duration, (int, float, np.number))
        or not np.isfinite(hop_duration)
        or hop_duration <= 0
    ):
        raise ValueError(f"hop_duration must be a positive number of seconds, got {hop_duration!r}.")
    min_hop = MIN_HOP_FRACTION * max_duration
    if hop_duration < min_hop:
        raise ValueError(
            f"hop_duration={hop_duration:g} s is below the smallest hop, a tenth of the {max_duration:g} s window "
            f"({min_hop:g} s): closer windows only repeat the same audio. Pass hop_duration >= {min_hop:g}."
        )
    window = int(round(max_duration * sampling_rate))
    hop = max(1, int(round(hop_duration * sampling_rate)))
    num_samples = waveform.shape[-1]
    num_windows = 1
    if num_samples > window:  # as many as `sliding_windows` makes, counted without making them
        num_windows = len(range(0, num_samples - window, hop))
        num_windows += (num_windows - 1) * hop + window < num_samples
    if max_windows is not None and num_windows > max_windows:
        raise ValueError(
            f"{num_samples / sampling_rate:g} s of audio in windows of {max_duration:g} s every {hop_duration:g} s "
            f"are {num_windows} windows, more than max_windows={max_windows}. Pass a larger hop_duration, cut the "
            "audio, or pass a larger max_windows (None for no limit) to classify_long_audio or the pipeline."
        )
    return [waveform[s:e] for s, e in sliding_windows(num_samples, window, hop)]


@torch.no_grad()
def window_logits(
    model, feature_extractor, clips: list, sampling_rate: int, batch_size: int = WINDOW_BATCH_SIZE
) -> torch.Tensor:
    """Scores `len(clips)` clips in batches; returns logits `(W, num_labels)`."""
    device = model.device  # a PreTrainedModel's or an OnnxAudioClassifier's
    out = []
    for i in range(0, len(clips), batch_size):
        inputs = feature_extractor(clips[i : i + batch_size], sampling_rate=sampling_rate, return_tensors="pt")
        out.append(model(**{k: v.to(device) for k, v in inputs.items()}).logits.cpu())
    return torch.cat(out)


def classify_long_audio(
    model,
    feature_extractor,
    waveform,
    sampling_rate: int,
    long_audio: str = "mean",
    hop_duration: float | None = None,
    function_to_apply: str | None = None,
    batch_size: int = WINDOW_BATCH_SIZE,
    max_windows: int | None = MAX_WINDOWS,
) -> torch.Tensor:
    """
    Scores a mono recording of any length: windows of `feature_extractor.max_duration` seconds every
    `hop_duration` seconds (default half a window, at least a tenth), aggregated by `long_audio` ("mean" | "max";
    "truncate" = the paper's first `max_duration` seconds only), at most `max_windows` windows (None: no limit).
    Returns scores `(num_labels,)` after `function_to_apply` (default: the model's, see `default_function`).
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"Expected mono audio of shape (T,), got {waveform.shape}.")
    clips = split_audio(waveform, sampling_rate, feature_extractor.max_duration, long_audio, hop_duration, max_windows)
    logits = window_logits(model, feature_extractor, clips, sampling_rate, batch_size)
    function_to_apply = function_to_apply or default_function(model.config)
    return aggregate(scores_from_logits(logits, function_to_apply), long_audio)


def score_waveform(model, feature_extractor, waveform, sampling_rate: int, **kwargs) -> dict:
    """`{label: score}` for one recording (see `classify_long_audio`; default truncation)."""
    kwargs.setdefault("long_audio", "truncate")
    scores = classify_long_audio(model, feature_extractor, waveform, sampling_rate, **kwargs)
    return {model.config.id2label[i]: float(s) for i, s in enumerate(scores)}


def bfloat16_is_native(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware: a CUDA GPU of compute capability >= 8.0, an x86 CPU
    with AVX-512 BF16 or AMX. Elsewhere bfloat16 is emulated, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return True  # other accelerators: their own kernels decide


def int8_engine() -> str | None:
    """The quantized-kernel engine dynamic int8 Linear layers run with on this CPU (`x86`, `fbgemm`, `qnnpack`), or
    None when this torch build has none."""
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        return None
    return torch.backends.quantized.engine if torch.backends.quantized.engine in engines else engines[0]


def cast_for_inference(model, dtype: str = "float32"):
    """
    The model to serve in `dtype`, one of `INFERENCE_DTYPES`; the codec is not touched (it stays float32: its codes
    in bfloat16 differ from float32's, docs/serving-speed.md).

    - `"float32"`: the model as it is.
    - `"bfloat16"`: every weight cast to bfloat16 (`model.to(torch.bfloat16)`); rotary positions and the scores stay
      float32. Needs native bfloat16 (`bfloat16_is_native`): an error says so otherwise.
    - `"int8"`: dynamic int8 quantization of every `nn.Linear` (int8 weights, activations quantized per call;
      `torch.ao.quantization.quantize_dynamic`), in place. CPU only.

    Returns the model (in eval mode); raises ValueError for another dtype or one this machine cannot run.
    """
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype must be one of {INFERENCE_DTYPES}, got {dtype!r}.")
    device = next(model.parameters()).device
    if dtype == "bfloat16":
        if not bfloat16_is_native(device):
            where = "this CPU has neither AVX-512 BF16 nor AMX" if device.type == "cpu" else f"{device} has no bf16"
            raise ValueError(
                f"dtype='bfloat16' needs native bfloat16 matrix units and {where}: it would be emulated, slower "
                "than float32. Use dtype='float32', or 'int8' on a CPU."
            )
        return model.to(torch.bfloat16).eval()
    if dtype == "int8":
        if device.type != "cpu":
            raise ValueError(
                f"dtype='int8' (dynamic quantization) runs on CPU only, the model is on {device}: use "
                "dtype='bfloat16' on an accelerator, or move the model to the CPU first."
            )
        engine = int8_engine()
        if engine is None:
            raise ValueError("dtype='int8' needs quantized CPU kernels, which this torch build lacks: use 'float32'.")
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():  # torch.ao's own deprecation notice, once per Linear
            warnings.filterwarnings("ignore", message=".*quantize", category=UserWarning)
            torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model.eval()


class OnnxAudioClassifier:
    """
    A classifier's `model.onnx` (written by `export_onnx`), run by onnxruntime on CPU where the torch model would be:
    `classify_long_audio`, `score_waveform` and the Endpoints handler call it like the model,
    `model(input_ids=..., attention_mask=...).logits`.

    Args:
        path: the `.onnx` file.
        config: the model's config (labels, `codebook_index`, `problem_type`), e.g. `AutoConfig.from_pretrained`.
        num_threads: onnxruntime's intra-op threads (default: its own choice).
    """

    device = torch.device("cpu")

    def __init__(self, path: str, config, num_threads: int | None = None):
        import onnxruntime  # only this class needs it

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.config = config

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """`input_ids` `(B, T)` or `(B, K, T)` (row `config.codebook_index` is read; a fused model's graph takes all
        `(B, K, T)` and reads its rows itself), `attention_mask` `(B, T)`."""
        fused = getattr(self.config, "input_codebooks", None) is not None
        if fused and input_ids.dim() != 3:
            raise ValueError(
                f"This fused model reads codebooks {self.config.input_codebooks}: input_ids must be (batch, "
                f"num_codebooks, seq_len), got {tuple(input_ids.shape)}."
            )
        if input_ids.dim() == 3 and not fused:
            input_ids = input_ids[:, self.config.codebook_index]
        if attention_mask is None:
            attention_mask = (input_ids[:, 0] if fused else input_ids) != self.config.pad_token_id
        if attention_mask.dim() == 3:
            attention_mask = attention_mask[:, self.config.codebook_index]
        feeds = {"input_ids": input_ids.long().numpy(), "attention_mask": attention_mask.long().numpy()}
        (logits,) = self.session.run(["logits"], feeds)
        return _Logits(torch.from_numpy(logits))

    def eval(self):
        return self


class _Logits:
    def __init__(self, logits: torch.Tensor):
        self.logits = logits


class AudioFormerAudioClassificationPipeline(AudioClassificationPipeline):
    """
    `AudioClassificationPipeline` for AudioFormer: resamples `{"raw", "sampling_rate"}` input with the feature
    extractor (no torchaudio needed), classifies long audio by sliding windows (`long_audio="mean"|"max"`,
    `hop_duration`, `max_windows`), and scores multi-label models with sigmoid by default (like the stock pipeline).
    `inference_dtype="bfloat16"|"int8"` serves the model in that precision (`cast_for_inference`).
    """

    def __init__(self, *args, inference_dtype: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if inference_dtype is not None:
            self.model = cast_for_inference(self.model, inference_dtype)

    def __call__(self, inputs, **kwargs):
        long_audio = kwargs.get("long_audio", self._preprocess_params.get("long_audio", "truncate"))
        if long_audio != "truncate" and (kwargs.get("batch_size") or self._batch_size or 1) > 1:
            # The pipeline's batching would mix the windows of several recordings.
            raise ValueError(
                f"long_audio={long_audio!r} batches the windows of each recording itself: call the "
                "pipeline with batch_size=1 (the default)."
            )
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self, top_k=None, function_to_apply=None, long_audio=None, hop_duration=None, max_windows=None, **kwargs
    ):
        preprocess_params, forward_params, postprocess_params = super()._sanitize_parameters(
            top_k=top_k, function_to_apply=function_to_apply, **kwargs
        )
        if long_audio is not None:
            if long_audio not in AGGREGATIONS:
                raise ValueError(f"long_audio must be one of {AGGREGATIONS}, got {long_audio!r}.")
            preprocess_params["long_audio"] = long_audio
            postprocess_params["long_audio"] = long_audio
        if hop_duration is not None:
            preprocess_params["hop_duration"] = hop_duration
        if max_windows is not None:
            preprocess_params["max_windows"] = max_windows
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, inputs, long_audio="truncate", hop_duration=None, max_windows=MAX_WINDOWS):
        sampling_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
                raise ValueError('A dict input needs a "raw" (or "array") waveform and its "sampling_rate".')
            raw = inputs["raw"] if "raw" in inputs else inputs["array"]
            inputs, sampling_rate = raw, int(inputs["sampling_rate"])
        elif isinstance(inputs, (str, bytes)):
            return self._from_decoded(inputs, long_audio, hop_duration, max_windows)
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.cpu().numpy()
        if not isinstance(inputs, np.ndarray):
            raise TypeError(
                "Expected a numpy array, a torch tensor, a file path, bytes, or a dict "
                '{"raw": array, "sampling_rate": sr}.'
            )
        if inputs.ndim != 1:
            raise ValueError(f"Expected mono audio of shape (T,), got {inputs.shape}.")
        max_duration = self.feature_extractor.max_duration
        clips = split_audio(inputs, sampling_rate, max_duration, long_audio, hop_duration, max_windows)
        # The feature extractor resamples to its own rate. All windows have the same length, so their codes stack.
        features = [
            self.feature_extractor(clips[i : i + WINDOW_BATCH_SIZE], sampling_rate=sampling_rate, return_tensors="pt")
            for i in range(0, len(clips), WINDOW_BATCH_SIZE)
        ]
        return {key: torch.cat([f[key] for f in features]) for key in features[0]}

    def _forward(self, model_inputs):
        """One row per window: the model sees at most `WINDOW_BATCH_SIZE` of them at a time."""
        num_windows = model_inputs["input_ids"].shape[0]
        logits = [
            self.model(**{k: v[i : i + WINDOW_BATCH_SIZE] for k, v in model_inputs.items()}).logits
            for i in range(0, num_windows, WINDOW_BATCH_SIZE)
        ]
        return {"logits": torch.cat(logits)}

    def _from_decoded(self, inputs, long_audio, hop_duration, max_windows):
        from transformers.pipelines.audio_utils import ffmpeg_read

        if isinstance(inputs, str) and inputs.startswith(("http://", "https://")):
            from huggingface_hub.utils import httpx  # as transformers' own pipeline: the client the Hub library ships

            inputs = httpx.get(inputs, follow_redirects=True).content
        elif isinstance(inputs, str):
            with open(inputs, "rb") as f:
                inputs = f.read()
        waveform = ffmpeg_read(inputs, self.feature_extractor.sampling_rate)
        return self.preprocess(waveform, long_audio, hop_duration, max_windows)

    def postprocess(self, model_outputs, top_k=5, function_to_apply=None, long_audio="truncate"):
        function_to_apply = function_to_apply or default_function(self.model.config)
        scores = aggregate(scores_from_logits(model_outputs["logits"], function_to_apply), long_audio)
        values, ids = scores.topk(min(top_k, scores.numel()))
        return [{"score": float(v), "label": self.model.config.id2label[int(i)]} for v, i in zip(values, ids)]


__all__ = [
    "AudioFormerAudioClassificationPipeline",
    "CUSTOM_PIPELINES",
    "classify_long_audio",
    "score_waveform",
    "sliding_windows",
    "aggregate",
    "split_audio",
    "default_function",
    "scores_from_logits",
    "score_description",
    "cast_for_inference",
    "INFERENCE_DTYPES",
    "OnnxAudioClassifier",
]
