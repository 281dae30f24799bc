"""
A small codec for the real-audio evaluation: a 24 kHz EnCodec-shaped model whose 4 residual codebooks (3 kbps, 75
frames per second, 1024 codes each) are fitted by k-means on encoder outputs of the training audio.

What it is: transformers' `EncodecModel` with a small, randomly initialised (seeded) encoder (hidden size 32, 8
filters, strides 2-4-5-8 = hop 320), so `AudioFormerFeatureExtractor` and every tool of this project use it like the
real EnCodec. Its quantizer is fitted to the audio: codebook 1 by k-means (scikit-learn's `MiniBatchKMeans`) on the
encoder frames, codebook 2 on what codebook 1 leaves (the residual), and so on: residual vector quantization, as in
EnCodec, but with a frozen random encoder instead of a trained one.

What it is not: EnCodec. The encoder is not trained, the decoder is random (the codes cannot be turned back into
audio), and the codes are coarser descriptions of the sound than EnCodec's. The real weights cannot be downloaded
where this benchmark was written; with them, save
`AudioFormerFeatureExtractor(codec_name_or_path="facebook/encodec_24khz", max_duration=4.0)` as `<work_dir>/codec`
and `run.py` uses it instead of fitting this one. The random tiny codec of the tests (`training/tiny_codec.py`) is
not fitted to any audio: its codes carry almost no class information, which is why this one exists.

    python benchmarks/real_audio/fit_codec.py --audio_dir real_audio/audio/pretrain/train --output_dir real_audio/codec
"""

import argparse
import glob
import os

import numpy as np
import soundfile as sf
import torch
from sklearn.cluster import MiniBatchKMeans
from transformers import EncodecModel

from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import tiny_codec_config


def codec_config():
    return tiny_codec_config(hidden_size=32, num_filters=8, codebook_dim=32, target_bandwidths=[1.5, 3.0])


@torch.no_grad()
def encoder_frames(codec: EncodecModel, files: list[str]) -> np.ndarray:
    """Encoder outputs of the files (24 kHz mono), one row per frame: `(frames, codebook_dim)`."""
    frames = []
    for path in files:
        audio, sr = sf.read(path, dtype="float32")
        if sr != codec.config.sampling_rate or audio.ndim != 1:
            raise ValueError(f"{path}: expected 24 kHz mono audio, got {sr} Hz, shape {audio.shape}.")
        out = codec.encoder(torch.from_numpy(audio)[None, None])  # (1, D, F)
        frames.append(out[0].T.numpy())
    return np.concatenate(frames)


@torch.no_grad()
def fit_codebooks(codec: EncodecModel, frames: np.ndarray, seed: int = 0, max_frames: int = 100_000) -> list[float]:
    """Fits each residual codebook by k-means, in place; returns the mean squared residual after each stage."""
    rng = np.random.default_rng(seed)
    if len(frames) > max_frames:
        frames = frames[rng.choice(len(frames), max_frames, replace=False)]
    residual = torch.from_numpy(frames).float()
    errors = []
    for i, layer in enumerate(codec.quantizer.layers):
        kmeans = MiniBatchKMeans(
            n_clusters=codec.config.codebook_size, batch_size=4096, n_init=1, max_iter=50, random_state=seed + i
        ).fit(residual.numpy())
        embed = torch.from_numpy(kmeans.cluster_centers_).float()
        book = layer.codebook
        book.embed.copy_(embed)
        book.embed_avg.copy_(embed)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
        residual = residual - book.decode(book.encode(residual[None]))[0]
        errors.append(float(residual.pow(2).mean()))
    return errors


def build_fitted_codec(audio_dir: str, output_dir: str, seconds: float, seed: int = 0) -> AudioFormerFeatureExtractor:
    """Fits the codec on every wav of `audio_dir`; saves it and a feature extractor (`max_duration=seconds`)."""
    files = sorted(glob.glob(os.path.join(audio_dir, "*.wav")))
    if not files:
        raise ValueError(f"No .wav files in {audio_dir}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = EncodecModel(codec_config()).eval()
    frames = encoder_frames(codec, files)
    errors = fit_codebooks(codec, frames, seed)
    print(f"fitted 4 codebooks on {len(frames)} frames of {len(files)} clips; residual MSE per stage {errors}")
    codec.save_pretrained(output_dir)
    fe = AudioFormerFeatureExtractor(codec_name_or_path=os.path.abspath(output_dir), max_duration=seconds)
    fe.save_pretrained(output_dir)
    return fe


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seconds", type=float, default=4.0, help="max_duration of the feature extractor.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_fitted_codec(args.audio_dir, args.output_dir, args.seconds, args.seed)


if __name__ == "__main__":
    main()
