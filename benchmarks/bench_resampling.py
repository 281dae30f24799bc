"""
python-soxr (`resample`, the feature extractor's resampler) against the polyphase filter it replaced
(`resample_poly`, numerically scipy's `resample_poly`, copied here as it was): accuracy, codes and speed.

For each input rate:
- accuracy against an exact reference: five tones below 80% of the lower Nyquist, sampled at the rate, resampled to
  24 kHz and compared with the same tones evaluated at the 24 kHz sample times (max abs error, edges left out);
- the two resamplers' outputs on the parity clips (`seed_audio`, what the EnCodec parity test encodes), and the share
  of EnCodec codes that differ between them, for the full-size 24 kHz EnCodec architecture (codebooks seeded) and the
  tiny test codec, and on 10 s of the band-limited tones; `test_float32_codes_match` allows 1% between float32 and
  float64 codes;
- seconds per 10 s clip, median of interleaved repeats, and the peak extra memory of one call (in a fresh process).

    python benchmarks/bench_resampling.py [--repeats 5] [--clips 4]
"""

import argparse
import json
import math

import numpy as np
import torch
from interleaved_timing import medians, time_interleaved
from peak_memory import in_fresh_process, print_step_peak_bytes
from transformers import EncodecConfig, EncodecModel

from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.tokenization import feature_extraction_audioformer as fea
from audioformer.training.tiny_codec import build_tiny_codec, seed_audio, seed_codebooks


SR = 24000
RATES = [8000, 16000, 22050, 44100, 48000, 96000, 383999]


# ---- the replaced resampler, as it was in tokenization/feature_extraction_audioformer.py (numerically scipy's)


def kaiser_sinc_filter(up: int, down: int, half_width: int = 10, beta: float = 5.0) -> np.ndarray:
    """Low-pass FIR of `2 * half_width * max(up, down) + 1` taps, the one `scipy.signal.resample_poly` uses
    (`firwin(..., 1 / max(up, down), window=("kaiser", 5.0))`), with gain `up`. Returns float64 `(taps,)`."""
    max_rate = max(up, down)
    half_len = half_width * max_rate
    num_taps = 2 * half_len + 1
    cutoff = 1.0 / max_rate
    m = np.arange(num_taps, dtype=np.float64) - half_len
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(num_taps, beta)
    return h / h.sum() * up


def old_resample_poly(waveform: torch.Tensor, orig_sr: int, target_sr: int, chunk: int = 32768) -> torch.Tensor:
    """
    Anti-aliased polyphase resampling of `waveform` `(..., T)` from `orig_sr` to `target_sr` Hz, numerically the
    same as `scipy.signal.resample_poly(x, up, down, axis=-1)` (zero boundary, Kaiser-windowed sinc).
    Returns `(..., ceil(T * up / down))` in the dtype of `waveform`.
    """
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"Sampling rates must be positive, got {orig_sr} -> {target_sr}.")
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    if up == down:
        return waveform
    h = torch.from_numpy(kaiser_sinc_filter(up, down)).to(device=waveform.device, dtype=waveform.dtype)
    half_len = (h.numel() - 1) // 2
    num_sub = -(-h.numel() // up)  # taps per polyphase branch
    h = torch.nn.functional.pad(h, (0, num_sub * up - h.numel()))
    branches = h.view(num_sub, up).t()  # branches[p, j] = h[p + j * up]

    length = waveform.shape[-1]
    out_len = -(-length * up // down)
    # y[n] = sum_j x[base_n - j] * h[phase_n + j * up], with t_n = n * down + half_len = base_n * up + phase_n.
    x = torch.nn.functional.pad(waveform, (num_sub, num_sub))  # zero boundary, like upfirdn
    j = torch.arange(num_sub, device=waveform.device)
    out = []
    for start in range(0, out_len, chunk):
        n = torch.arange(start, min(start + chunk, out_len), device=waveform.device)
        t = n * down + half_len
        base, phase = t // up, t % up
        idx = (base[:, None] - j[None, :] + num_sub).clamp_(0, x.shape[-1] - 1)  # (n, J); clamped taps hit zeros
        valid = (base[:, None] - j[None, :] < length) & (base[:, None] - j[None, :] >= 0)
        taps = branches[phase] * valid  # (n, J)
        out.append((x[..., idx] * taps).sum(-1))
    return torch.cat(out, dim=-1)


def with_soxr(x, rate):
    return fea.resample(x, rate, SR)


def with_poly(x, rate):
    return old_resample_poly(x, rate, SR)


def band_limited_tones(rate: int, seconds: float = 10.0):
    """Five tones below 80% of the lower Nyquist: (samples at `rate` `(T,)` float64, the function of time)."""
    rng = np.random.default_rng(rate)
    freqs, phases = rng.uniform(20, 0.4 * min(rate, SR), size=5), rng.uniform(0, 2 * np.pi, size=5)

    def tones(t):
        return 0.5 * sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, phases)) / 5

    return torch.from_numpy(tones(np.arange(int(seconds * rate)) / rate)), tones


def tone_error(resampler, rate: int) -> float:
    x, tones = band_limited_tones(rate, 2.0)
    got = resampler(x, rate).numpy()
    expected = tones(np.arange(got.shape[0]) / SR)
    inner = slice(SR // 5, -SR // 5)
    return float(np.abs(got[inner] - expected[inner]).max())


def code_mismatch(fe, waves_a, waves_b) -> float:
    codes_a, _ = fe.encode_waveforms([w.float() for w in waves_a])
    codes_b, _ = fe.encode_waveforms([w.float() for w in waves_b])
    return float((codes_a != codes_b).float().mean())


def bench_rate(rate: int, codecs: dict, num_clips: int, repeats: int) -> dict:
    clips = seed_audio(num_clips, 10 * rate, rate, seed=rate)[:, 0].double()  # (clips, 10 s at rate)
    soxr_out = [with_soxr(c, rate) for c in clips]
    poly_out = [with_poly(c, rate) for c in clips]
    diff = torch.stack([(a - b).pow(2).mean() / b.pow(2).mean() for a, b in zip(soxr_out, poly_out)])
    tones, _ = band_limited_tones(rate)
    row = {
        "rate": rate,
        "soxr_tone_error": tone_error(with_soxr, rate),
        "poly_tone_error": tone_error(with_poly, rate),
        "relative_rms_difference": float(diff.mean().sqrt()),
        **{f"code_mismatch_{k}": code_mismatch(fe, soxr_out, poly_out) for k, fe in codecs.items()},
        "code_mismatch_full_tones": code_mismatch(codecs["full"], [with_soxr(tones, rate)], [with_poly(tones, rate)]),
    }
    one = clips[0]
    steps = {"soxr": lambda: with_soxr(one, rate), "poly": lambda: with_poly(one, rate)}
    times = medians(*time_interleaved(steps, repeats))
    row.update(
        soxr_s=times["soxr"],
        poly_s=times["poly"],
        speedup=times["poly"] / times["soxr"],
        soxr_peak_mb=in_fresh_process(__file__, ["--peak", "soxr", "--rate", str(rate)]) / 2**20,
        poly_peak_mb=in_fresh_process(__file__, ["--peak", "poly", "--rate", str(rate)]) / 2**20,
    )
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", type=int, default=4, help="parity clips of 10 s per rate")
    parser.add_argument("--peak", choices=["soxr", "poly"], help=argparse.SUPPRESS)  # one call, in a fresh process
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.peak:
        one = seed_audio(1, 10 * args.rate, args.rate, seed=args.rate)[0, 0].double()
        resampler = with_soxr if args.peak == "soxr" else with_poly
        print_step_peak_bytes(lambda: resampler(one, args.rate))
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        full = EncodecModel(EncodecConfig()).eval()
    seed_codebooks(full, seed=0)
    codecs = {
        "full": AudioFormerFeatureExtractor(codec_name_or_path="full").set_codec(full),
        "tiny": AudioFormerFeatureExtractor(codec_name_or_path="tiny").set_codec(build_tiny_codec(0)),
    }
    rows = []
    for rate in RATES:
        rows.append(bench_rate(rate, codecs, args.clips, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(
        "| rate (Hz) | tone error soxr / old | soxr vs old, rel. RMS | codes differing: parity clips full / tiny, "
        "tones full | s per 10 s clip soxr / old | peak MB soxr / old |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['rate']} | {r['soxr_tone_error']:.1e} / {r['poly_tone_error']:.1e} | "
            f"{r['relative_rms_difference']:.1e} | {r['code_mismatch_full']:.1%} / {r['code_mismatch_tiny']:.1%}, "
            f"{r['code_mismatch_full_tones']:.1%} | "
            f"{r['soxr_s']:.3f} / {r['poly_s']:.3f} ({r['speedup']:.0f}x) | "
            f"{r['soxr_peak_mb']:.0f} / {r['poly_peak_mb']:.0f} |"
        )
    assert all(math.isfinite(r["soxr_s"]) for r in rows)


if __name__ == "__main__":
    main()
