"""
A tiny, seeded EnCodec for tests, demos and benchmarks (no download).

It has the real codec's interface and framing (24 kHz, hop 320 = 75 frames/s, 1024-entry codebooks,
3 kbps = 4 codebooks) with very few channels, so it runs fast on CPU. A freshly initialised `EncodecModel`
has all-zero codebooks (every code would be 0), so the codebooks are seeded from encoder outputs on seeded
audio, residual stage by residual stage: codes on ordinary audio are then diverse.

    >>> from training.tiny_codec import build_tiny_codec
    >>> codec = build_tiny_codec(seed=0)           # transformers.EncodecModel, eval mode
    >>> build_tiny_feature_extractor("/tmp/fe")   # codec + preprocessor_config.json in one folder
"""

import math
import os

import torch
from transformers import EncodecConfig, EncodecModel

from audioformer.tokenization.feature_extraction_audioformer import AudioFormerFeatureExtractor


# A tiny AudioFormer (2 layers x 32, 4 heads) to go with the tiny codec: the model most tests build.
TINY_MODEL = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=256
)


def tiny_codec_config(**overrides) -> EncodecConfig:
    """EncodecConfig of the tiny codec: 24 kHz, hop 8*5*4*2 = 320, codebook 1024, bandwidths (1.5, 3, 6)."""
    kwargs = dict(
        target_bandwidths=[1.5, 3.0, 6.0],
        sampling_rate=24000,
        audio_channels=1,
        normalize=False,
        chunk_length_s=None,
        overlap=None,
        hidden_size=16,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[8, 5, 4, 2],
        num_lstm_layers=1,
        codebook_size=1024,
        codebook_dim=16,
    )
    kwargs.update(overrides)
    return EncodecConfig(**kwargs)


def seed_audio(num_clips: int, num_samples: int, sampling_rate: int = 24000, seed: int = 0) -> torch.Tensor:
    """Seeded varied audio `(num_clips, 1, num_samples)`: noise at random levels plus random tones."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / sampling_rate
    level = torch.exp(torch.empty(num_clips, 1, 1).uniform_(math.log(0.01), math.log(0.5), generator=gen))
    freq = torch.exp(torch.empty(num_clips, 1, 1).uniform_(math.log(50.0), math.log(8000.0), generator=gen))
    noise = torch.randn(num_clips, 1, num_samples, generator=gen)
    return level * noise + 0.3 * torch.sin(2 * math.pi * freq * t)


@torch.no_grad()
def seed_codebooks(codec: EncodecModel, seed: int = 0, num_clips: int = 8, seconds: float = 2.0) -> None:
    """Fills every codebook with encoder residuals of seeded audio (one-step k-means init), in place.

    Computed in float64, then stored in the codec's dtype: in float32 the encoder's sums differ in the last bit
    between thread counts, which flipped near-tied nearest-code searches here and changed the later codebooks, so
    the "same" seeded codec gave other codes with 1 and 2 threads (1.3% of the demo's codes). On some CPUs (Intel
    Xeon here) float64 convolutions differ in the last bit too, so the seeding also runs on one thread.
    """
    dtype = next(codec.parameters()).dtype
    threads = torch.get_num_threads()
    codec.double()
    torch.set_num_threads(1)  # float64 sums still differ in the last bit between thread counts on some CPUs
    try:
        _seed_codebooks(codec, seed, num_clips, seconds)
    finally:
        torch.set_num_threads(threads)
        codec.to(dtype)


def _seed_codebooks(codec: EncodecModel, seed: int, num_clips: int, seconds: float) -> None:
    cfg = codec.config
    audio = seed_audio(num_clips, int(seconds * cfg.sampling_rate), cfg.sampling_rate, seed)
    residual = codec.encoder(audio.double())  # (N, D, F)
    residual = residual.permute(0, 2, 1).reshape(-1, residual.shape[1])  # (N*F, D)
    if residual.shape[0] < cfg.codebook_size:
        raise ValueError(f"Need at least {cfg.codebook_size} frames of seed audio, got {residual.shape[0]}.")
    gen = torch.Generator().manual_seed(seed + 1)
    for layer in codec.quantizer.layers:
        book = layer.codebook
        # distinct frames (no duplicate entries, which would make near-ties between codes)
        pick = torch.randperm(residual.shape[0], generator=gen)[: cfg.codebook_size]
        jitter = 0.05 * residual.std() * torch.randn(cfg.codebook_size, residual.shape[1], generator=gen)
        embed = (residual[pick] + jitter.to(residual.dtype)).to(book.embed.dtype)
        book.embed.copy_(embed)
        book.embed_avg.copy_(embed)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
        residual = residual - book.decode(book.encode(residual[None]))[0]


def build_tiny_codec(
    seed: int = 0,
    save_directory: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
    **config_overrides,
) -> EncodecModel:
    """
    A tiny `EncodecModel` (eval mode, `dtype`) with seeded weights and seeded, non-trivial codebooks; the same
    seed gives the same model, whatever the thread count. If `save_directory` is given it is also saved there
    (safetensors, in `dtype`: the feature extractor encodes in the dtype the codec loads with, and float64 codes do
    not depend on the thread count, while float32 ones differ at near-ties, ~0.1% of the demo's codes).
    """
    config = tiny_codec_config(**config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = EncodecModel(config)
    codec.eval()
    seed_codebooks(codec, seed=seed)
    codec.to(dtype)
    if save_directory is not None:
        codec.save_pretrained(save_directory)
    return codec


def build_tiny_feature_extractor(
    save_directory: str | os.PathLike,
    seed: int = 0,
    max_duration: float = 10.0,
    dtype: torch.dtype = torch.float32,
    **fe_kwargs,
):
    """
    Saves a tiny codec (in `dtype`) and an `AudioFormerFeatureExtractor` pointing at it into `save_directory`
    (`config.json` + `model.safetensors` + `preprocessor_config.json`); returns the feature extractor.
    """
    save_directory = os.fspath(save_directory)
    build_tiny_codec(seed=seed, save_directory=save_directory, dtype=dtype)
    fe = AudioFormerFeatureExtractor(codec_name_or_path=save_directory, max_duration=max_duration, **fe_kwargs)
    fe.save_pretrained(save_directory)
    return fe


__all__ = ["TINY_MODEL", "build_tiny_codec", "build_tiny_feature_extractor", "tiny_codec_config", "seed_audio"]
