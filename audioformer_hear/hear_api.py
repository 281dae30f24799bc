"""
The HEAR 2021 common API for AudioFormer checkpoints: `load_model`, `get_scene_embeddings`,
`get_timestamp_embeddings` (https://hearbenchmark.com/hear-api.html).

    model = load_model("outputs/audioformer-mlm-c1")                       # any AudioFormer checkpoint folder
    model = load_model("outputs/audioformer-mlm-c1", codebook_models=["outputs/audioformer-mlm-c2", ...])
    scene = get_scene_embeddings(audio, model)                      # (n_sounds, model.scene_embedding_size)
    embeddings, timestamps = get_timestamp_embeddings(audio, model)  # (n_sounds, n_frames, size), (n_sounds, n_frames)

`audio` is a float32 tensor `(n_sounds, n_samples)` in [-1, 1] at `model.sample_rate` (48 kHz by default; HEAR
allows 16000, 22050, 44100 or 48000). The module resamples it to the codec's 24 kHz (`resample`, the feature
extractor's), cuts it into windows of the feature extractor's `max_duration` (10 s for the paper's models, a whole
number of codec frames), encodes every window as a clip, exactly as fine-tuning sees one (`[<BOA>, codes, <EOA>]`),
and runs each model on its own codebook row.

- Timestamp embeddings: the last hidden state at each code position, one per codec frame, so every
  `hop_length / 24000` s = 13.33 ms (75 per second); the timestamp of frame `j` is the centre of the samples it
  encodes, `(j + 0.5) * 13.33` ms, and frames whose centre lies past the end of the audio are dropped.
- Scene embeddings: the mean of the last hidden states over all positions of the clip's windows (`<BOA>` and `<EOA>`
  included), weighted by window length: for audio up to `max_duration` this is `pooled_output`, the feature FT1's
  classifier reads.
- Several models (one per codebook, e.g. C1..C4 pretrained by `run_mlm.py`): their embeddings are concatenated, in
  the order given; `scene_embedding_size` and `timestamp_embedding_size` are the sums of their hidden sizes.
"""

import os

import torch
from torch import nn

from audioformer.modeling_audioformer import AudioFormerModel
from audioformer.modeling_audioformer.long_audio import cast_for_inference
from audioformer.modeling_audioformer.modeling_audioformer import codes_and_mask
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.tokenization.feature_extraction_audioformer import resample


HEAR_SAMPLE_RATES = (16000, 22050, 44100, 48000)
# Windows run through the models at once (a HEAR batch of 2-minute sounds holds 12 windows per sound).
WINDOW_BATCH_SIZE = 16


class AudioFormerHEARModel(nn.Module):
    """
    AudioFormer models (one per codebook) and their codec, as HEAR's `model`. The codec is a sub-module, so
    `.to(device)` moves everything.

    Args:
        encoders: `AudioFormerModel`s, each reading its own codebook row (`config.codebook_index`), or its own rows
            (a fused model, `config.input_codebooks`).
        feature_extractor: the `AudioFormerFeatureExtractor` the models were trained with.
        sample_rate: the rate HEAR gives the audio at (one of `HEAR_SAMPLE_RATES`).
    """

    def __init__(
        self,
        encoders: list[AudioFormerModel],
        feature_extractor: AudioFormerFeatureExtractor,
        sample_rate: int = 48000,
    ):
        super().__init__()
        if int(sample_rate) not in HEAR_SAMPLE_RATES:
            raise ValueError(f"HEAR takes audio at one of {HEAR_SAMPLE_RATES} Hz, got sample_rate={sample_rate}.")
        if not encoders:
            raise ValueError("Give at least one AudioFormer model.")
        views = [m.config.read_codebooks for m in encoders]
        rows = [v[0] if len(v) == 1 else v for v in views]
        if len({tuple(v) for v in views}) != len(views):
            raise ValueError(f"The models read codebook rows {rows}: each must read its own row.")
        if max(max(v) for v in views) >= feature_extractor.num_codebooks:
            raise ValueError(
                f"A model reads codebook row {max(max(v) for v in views)} but the codec gives "
                f"{feature_extractor.num_codebooks} codebooks at {feature_extractor.bandwidth} kbps."
            )
        self.encoders = nn.ModuleList(encoders).eval()
        self.feature_extractor = feature_extractor
        self.codec = feature_extractor.codec  # registered, so that .to() moves it with the models
        self.sample_rate = int(sample_rate)
        self.scene_embedding_size = int(sum(m.config.hidden_size for m in encoders))
        self.timestamp_embedding_size = self.scene_embedding_size
        fe = feature_extractor
        self.hop_ms = 1000.0 * fe.hop_length / fe.sampling_rate
        # Windows of whole codec frames: frame j of a sound is frame j % per_window of window j // per_window.
        self.window_samples = (fe.max_samples // fe.hop_length) * fe.hop_length
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def windows(self, num_samples: int) -> list[tuple[int, int]]:
        """`(start, end)` ranges that cut `num_samples` samples at the codec's rate into windows."""
        return [(s, min(s + self.window_samples, num_samples)) for s in range(0, num_samples, self.window_samples)]

    @torch.no_grad()
    def hidden_states(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            audio: `(n_sounds, n_samples)` at `sample_rate`.
        Returns:
            hidden `(n_sounds, n_windows, L, D)` (D: the models' hidden sizes concatenated) and mask
            `(n_sounds, n_windows, L)`, 1 on `<BOA>`..`<EOA>` of each window.
        """
        if not isinstance(audio, torch.Tensor):
            raise ValueError(f"audio must be a torch.Tensor (n_sounds, n_samples), got {type(audio).__name__}.")
        if audio.dim() != 2 or audio.shape[-1] == 0:
            raise ValueError(
                f"audio must have shape (n_sounds, n_samples) with n_samples > 0, got {tuple(audio.shape)}."
            )
        if not torch.isfinite(audio).all():
            raise ValueError("audio contains NaN or Inf values.")
        fe = self.feature_extractor
        fe.to(self.device)
        wave = resample(audio.to(torch.float64), self.sample_rate, fe.sampling_rate).float().cpu()
        spans = self.windows(wave.shape[-1])
        clips = [wave[b, s:e] for b in range(wave.shape[0]) for s, e in spans]  # sound-major
        hidden, masks = [], []
        for i in range(0, len(clips), WINDOW_BATCH_SIZE):
            features = fe(clips[i : i + WINDOW_BATCH_SIZE], sampling_rate=fe.sampling_rate, padding="longest")
            ids, mask = features["input_ids"].to(self.device), features["attention_mask"].to(self.device)
            per_model = []
            for encoder in self.encoders:
                _, row_mask = codes_and_mask(ids, mask, encoder.config)
                # (B, K, T): each encoder reads its own row(s)
                per_model.append(encoder(input_ids=ids, attention_mask=row_mask).last_hidden_state.float())
            hidden.append(torch.cat(per_model, dim=-1))
            masks.append(mask)
        length = max(h.shape[1] for h in hidden)  # batches of windows may be padded to different lengths
        hidden = torch.cat([nn.functional.pad(h, (0, 0, 0, length - h.shape[1])) for h in hidden])
        mask = torch.cat([nn.functional.pad(m, (0, length - m.shape[1])) for m in masks])
        n_sounds, n_windows = audio.shape[0], len(spans)
        return hidden.view(n_sounds, n_windows, length, -1), mask.view(n_sounds, n_windows, length)

    def scene_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        hidden, mask = self.hidden_states(audio)
        weights = mask.to(hidden.dtype).unsqueeze(-1)  # (n, W, L, 1)
        return (hidden * weights).sum(dim=(1, 2)) / weights.sum(dim=(1, 2)).clamp(min=1.0)

    def timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, mask = self.hidden_states(audio)
        n_sounds, n_windows = hidden.shape[:2]
        # Code positions 1..frames of each window (drop <BOA>, <EOA> and padding); every sound has the same windows.
        frames_per_window = (mask[0].sum(dim=-1) - 2).tolist()
        frames = torch.cat([hidden[:, w, 1 : 1 + int(n)] for w, n in enumerate(frames_per_window)], dim=1)
        timestamps = (torch.arange(frames.shape[1], device=frames.device, dtype=torch.float64) + 0.5) * self.hop_ms
        duration_ms = 1000.0 * audio.shape[-1] / self.sample_rate
        keep = max(1, int((timestamps <= duration_ms).sum()))
        timestamps = timestamps[:keep].clamp(max=duration_ms).float()
        return frames[:, :keep].contiguous(), timestamps.expand(n_sounds, keep).contiguous()


def load_model(
    model_file_path: str = "",
    codebook_models: list[str] | None = None,
    sample_rate: int = 48000,
    feature_extractor: str | None = None,
    dtype: str = "float32",
) -> AudioFormerHEARModel:
    """
    HEAR's `load_model`.

    Args:
        model_file_path: an AudioFormer checkpoint folder (from `run_mlm.py` or `run_classification.py`, or a Hub
            download); its head, if any, is dropped.
        codebook_models: more checkpoints whose embeddings are concatenated after the first (the models of C2..C4).
        sample_rate: the rate of the audio HEAR passes (16000, 22050, 44100 or 48000).
        feature_extractor: folder of the `AudioFormerFeatureExtractor` (default: `model_file_path`'s).
        dtype: `"float32"`, `"bfloat16"` or `"int8"` (CPU only), the precision the models run in
            (`cast_for_inference`; HEAR: `--model-options '{"dtype": "int8"}'`); embeddings are float32 in any case.
    """
    if not model_file_path:
        raise ValueError(
            "load_model needs an AudioFormer checkpoint folder (hear-validator audioformer_hear -m PATH; "
            "heareval: --model PATH)."
        )
    paths = [model_file_path, *(codebook_models or [])]
    for path in paths:
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"{path} is not an AudioFormer checkpoint folder (no config.json).")
    fe_path = feature_extractor or model_file_path
    if not os.path.isfile(os.path.join(fe_path, "preprocessor_config.json")):
        raise ValueError(
            f"No preprocessor_config.json in {fe_path}: pass the feature extractor's folder, e.g. "
            '--model-options \'{"feature_extractor": "PATH"}\'.'
        )
    fe = AudioFormerFeatureExtractor.from_pretrained(fe_path)
    encoders = [cast_for_inference(AudioFormerModel.from_pretrained(path), dtype) for path in paths]
    return AudioFormerHEARModel(encoders, fe, sample_rate=sample_rate)


def get_scene_embeddings(audio: torch.Tensor, model: AudioFormerHEARModel) -> torch.Tensor:
    """`(n_sounds, n_samples)` audio at `model.sample_rate` -> float32 `(n_sounds, model.scene_embedding_size)`."""
    return model.scene_embeddings(audio)


def get_timestamp_embeddings(audio: torch.Tensor, model: AudioFormerHEARModel) -> tuple[torch.Tensor, torch.Tensor]:
    """`(n_sounds, n_samples)` audio -> float32 embeddings `(n_sounds, n_frames, model.timestamp_embedding_size)` and
    timestamps `(n_sounds, n_frames)` in milliseconds (frame centres, 13.33 ms apart)."""
    return model.timestamp_embeddings(audio)


__all__ = [
    "AudioFormerHEARModel",
    "load_model",
    "get_scene_embeddings",
    "get_timestamp_embeddings",
    "HEAR_SAMPLE_RATES",
]
