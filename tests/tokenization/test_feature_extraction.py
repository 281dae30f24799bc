"""Tests of tokenization.AudioFormerFeatureExtractor on a tiny seeded codec and synthesised audio."""

import copy
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audioformer.tokenization import AudioFormerFeatureExtractor, feature_extraction_audioformer
from audioformer.tokenization.feature_extraction_audioformer import resample
from audioformer.training.tiny_codec import TINY_MODEL, build_tiny_codec, seed_audio


SR = 24000
HOP = 320


def _clip(seconds, seed=0, sr=SR):
    return seed_audio(1, int(round(seconds * sr)), sr, seed=seed)[0, 0].numpy()


def _codes(fe, ids, length):
    """EnCodec codes of one row: (K, n) from input_ids (K, T)."""
    return ids[:, 1 : length + 1] - 3


# ---------------------------------------------------------------- resampling


def _tones(rate, seconds, seed):
    """Five tones below 80% of the lower Nyquist (of `rate` and 24 kHz): `(samples at rate, function of time)`."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(20, 0.4 * min(rate, SR), size=5)
    phases = rng.uniform(0, 2 * np.pi, size=5)

    def tones(t):
        return sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, phases)) / 5

    return tones(np.arange(int(seconds * rate)) / rate), tones


@pytest.mark.parametrize("orig_sr", [8000, 11025, 16000, 22050, 44100, 48000])
def test_resample_matches_scipy_in_the_passband(orig_sr):
    """Against scipy's polyphase filter (the resampler soxr replaced): same length, timing and gain on band-limited
    audio, to within scipy's own passband error (~1e-3: a Kaiser window of beta 5 and 10 taps per side)."""
    from scipy.signal import resample_poly as scipy_resample_poly

    x, _ = _tones(orig_sr, 1.0, orig_sr)
    x = x[: orig_sr // 10 * 9 + 7]
    g = math.gcd(orig_sr, SR)
    expected = scipy_resample_poly(x, SR // g, orig_sr // g)
    got = resample(torch.from_numpy(x), orig_sr, SR).numpy()
    assert got.shape == expected.shape
    inner = slice(SR // 20, -SR // 20)
    np.testing.assert_allclose(got[inner], expected[inner], rtol=0, atol=3e-3)


def test_resample_is_anti_aliased():
    # A 15 kHz tone at 48 kHz is above the 12 kHz Nyquist of 24 kHz: it must be removed, not folded to 9 kHz.
    t = np.arange(48000) / 48000
    tone = torch.from_numpy(np.sin(2 * np.pi * 15000 * t))
    out = resample(tone, 48000, SR)[1000:-1000]
    assert out.pow(2).mean().sqrt() < 0.01
    passband = resample(torch.from_numpy(np.sin(2 * np.pi * 1000 * t)), 48000, SR)[1000:-1000]
    assert abs(passband.pow(2).mean().sqrt().item() - math.sqrt(0.5)) < 0.01


@pytest.mark.parametrize("orig_sr", [1000, 8000, 11025, 44100, 48000, 96000, 383999])
def test_resample_matches_the_analytic_signal(orig_sr):
    """soxr against an exact reference: tones below 80% of the lower Nyquist, sampled at `orig_sr`, must land on
    the same tones evaluated at the 24 kHz sample times (away from the edges)."""
    x, tones = _tones(orig_sr, 2.0, orig_sr)
    got = resample(torch.from_numpy(x), orig_sr, SR).numpy()
    assert got.shape == (math.ceil(x.shape[0] * SR / orig_sr),)
    inner = slice(SR // 5, -SR // 5)
    expected = tones(np.arange(got.shape[0]) / SR)
    np.testing.assert_allclose(got[inner], expected[inner], rtol=0, atol=1e-4)


def test_resample_keeps_shape_dtype_and_length_convention():
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 11025 // 3 + 5))).float()
    out = resample(x, 11025, SR)
    assert out.dtype == torch.float32 and out.shape == (2, 3, math.ceil(x.shape[-1] * SR / 11025))
    torch.testing.assert_close(out[1, 2], resample(x[1, 2], 11025, SR))  # channels are independent


def test_without_soxr_resampling_asks_for_it(tiny_feature_extractor, monkeypatch):
    """Hub remote code may run where python-soxr is not installed: 24 kHz audio needs no resampling, other rates
    get an ImportError that says what to install (not codes from another filter)."""
    monkeypatch.setattr(feature_extraction_audioformer, "soxr", None)
    assert tiny_feature_extractor(_clip(0.5), sampling_rate=SR)["attention_mask"].sum() == 38 + 2
    with pytest.raises(ImportError, match=r"from 16000 Hz to 24000 Hz needs python-soxr: `pip install soxr`"):
        tiny_feature_extractor(_clip(0.5, sr=16000), sampling_rate=16000)


@pytest.mark.parametrize("rate", [999, 384001, 1000003])
def test_rates_outside_the_accepted_range_are_refused(tiny_feature_extractor, rate):
    """A few samples declared at a huge rate used to build a filter of 20 * rate taps (1000003 Hz: 8.7 s, 2.1 GB)."""
    with pytest.raises(ValueError, match=f"{rate} Hz is outside the accepted range 1000 to 384000 Hz"):
        tiny_feature_extractor(np.zeros(2000, np.float32), sampling_rate=rate)
    with pytest.raises(ValueError, match=f"orig_sr={rate} Hz is outside"):
        resample(torch.zeros(2000), rate, SR)


def test_the_accepted_range_ends_are_resampled(tiny_feature_extractor):
    for rate in (1000, 384000):
        out = tiny_feature_extractor(np.zeros(rate // 2, np.float32), sampling_rate=rate)
        assert out["attention_mask"].sum() == math.ceil(SR / 2 / HOP) + 2


# ---------------------------------------------------------------- tiny codec


def test_tiny_codec_is_seeded_and_codes_are_diverse():
    a, b, c = build_tiny_codec(0), build_tiny_codec(0), build_tiny_codec(1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["quantizer.layers.0.codebook.embed"], sc["quantizer.layers.0.codebook.embed"])
    with torch.no_grad():
        codes = a.encode(torch.from_numpy(_clip(2.0, seed=3))[None, None], bandwidth=3.0).audio_codes[0, 0]
    assert codes.shape == (4, 150)
    assert all(len(set(row.tolist())) > 10 for row in codes)  # a fresh EncodecModel gives 1


# ---------------------------------------------------------------- output contract


def test_token_layout_and_shapes(tiny_feature_extractor):
    fe = tiny_feature_extractor
    clips = [_clip(2.0, 1), _clip(0.5, 2), _clip(1.0 + 17 / SR, 3)]
    out = fe(clips, sampling_rate=SR)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.dtype == torch.long and ids.shape == (3, 4, 152) and mask.shape == (3, 152)
    for b, n in enumerate([150, 38, 76]):  # ceil(T / 320)
        assert (ids[b, :, 0] == 0).all() and (ids[b, :, n + 1] == 2).all()
        assert ((ids[b, :, 1 : n + 1] >= 3) & (ids[b, :, 1 : n + 1] <= 1026)).all()
        assert (ids[b, :, n + 2 :] == 1).all()
        assert mask[b, : n + 2].eq(1).all() and mask[b, n + 2 :].eq(0).all()
    longest = fe(clips[1:], sampling_rate=SR, padding="longest")
    assert longest["input_ids"].shape == (2, 4, 78)
    torch.testing.assert_close(longest["input_ids"], ids[1:, :, :78], rtol=0, atol=0)


def test_ten_seconds_is_752_ids(tiny_codec_dir):
    fe = AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=10.0)
    out = fe(_clip(10.0, 4), sampling_rate=SR)
    assert out["input_ids"].shape == (1, 4, 752) and out["attention_mask"].sum() == 752
    assert fe.max_frames == 750


def test_codes_equal_encodec_encode(tiny_feature_extractor):
    fe = tiny_feature_extractor
    codec = fe.codec
    # Whole number of frames: exactly EncodecModel.encode(clip) + 3.
    clip = _clip(1.0 + 5 * HOP / SR, 5)
    ids = fe(clip, sampling_rate=SR)["input_ids"][0]
    with torch.no_grad():
        ref = codec.encode(torch.from_numpy(clip)[None, None], bandwidth=3.0).audio_codes[0, 0]
    torch.testing.assert_close(_codes(fe, ids, ref.shape[-1]), ref, rtol=0, atol=0)
    # Any length: the clip is zero-padded to whole frames; all frames but the last equal encode(clip) as is.
    clip = _clip(0.7 + 123 / SR, 6)
    n = math.ceil(len(clip) / HOP)
    ids = fe(clip, sampling_rate=SR)["input_ids"][0]
    padded = np.pad(clip, (0, n * HOP - len(clip)))
    with torch.no_grad():
        ref_padded = codec.encode(torch.from_numpy(padded)[None, None], bandwidth=3.0).audio_codes[0, 0]
        ref_raw = codec.encode(torch.from_numpy(clip)[None, None], bandwidth=3.0).audio_codes[0, 0]
    torch.testing.assert_close(_codes(fe, ids, n), ref_padded, rtol=0, atol=0)
    torch.testing.assert_close(_codes(fe, ids, n)[:, :-1], ref_raw[:, :-1], rtol=0, atol=0)


def test_codes_do_not_depend_on_the_batch_float64(tiny_codec_dir):
    # In float64 there are no near-ties: codes must be bit-identical alone and in any padded batch.
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir, max_duration=1.0)
    fe.codec.double()
    target = _clip(0.6 + 41 / SR, 7)
    others = [_clip(1.0, 8), _clip(0.2, 9), _clip(0.9, 10)]
    alone = fe(target, sampling_rate=SR, padding="longest")["input_ids"][0]
    n = alone.shape[-1]
    cases = [
        ([target] + others, 0, "max_length", 8),
        ([others[1], target], 1, "longest", 8),
        (others[:2] + [target], 2, "max_length", 2),
    ]  # 8: one codec call for the batch; 2: two calls
    for batch, pos, padding, per_call in cases:
        fe.codec_batch_size = per_call
        ids = fe(batch, sampling_rate=SR, padding=padding)["input_ids"][pos]
        torch.testing.assert_close(ids[:, :n], alone, rtol=0, atol=0)
    # and by hand: one EncodecModel.encode call on the zero-padded batch with its padding mask
    x = torch.zeros(2, 1, 2 * SR, dtype=torch.float64)
    x[0, 0, : len(others[0])], x[1, 0, : len(target)] = torch.from_numpy(others[0]), torch.from_numpy(target)
    mask = x != 0
    with torch.no_grad():
        codes = fe.codec.encode(x, padding_mask=mask, bandwidth=3.0).audio_codes[0, 1]
    torch.testing.assert_close(codes[:, : n - 2] + 3, alone[:, 1:-1], rtol=0, atol=0)


def test_float32_batch_flip_rate_is_small(tiny_feature_extractor):
    # In float32 a code may flip on a near-tie between batch shapes; measured here, it must stay rare.
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_feature_extractor.codec_name_or_path, codec_batch_size=8)
    clips = [_clip(2.0 - 0.1 * i, 20 + i) for i in range(6)]
    batch = fe(clips, sampling_rate=SR)  # one codec call
    total = flips = 0
    for i, clip in enumerate(clips):
        alone = fe(clip, sampling_rate=SR)
        n = int(alone["attention_mask"].sum())
        flips += (alone["input_ids"][0, :, :n] != batch["input_ids"][i, :, :n]).sum().item()
        total += 4 * n
    assert flips / total < 0.005


# ---------------------------------------------------------------- input handling


def test_input_types_and_channels(tiny_codec_dir):
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir, max_duration=1.0)
    fe.codec.double()  # exact comparisons across batch shapes need float64 (see the flip-rate test)
    clip = _clip(0.5, 11) * 0.5
    ref = fe(clip, sampling_rate=SR)["input_ids"]
    pcm16 = np.round(clip * 32767).astype(np.int16)
    torch.testing.assert_close(
        fe(pcm16, sampling_rate=SR)["input_ids"], fe(pcm16.astype(np.float32) / 32768, sampling_rate=SR)["input_ids"]
    )
    pcm32 = pcm16.astype(np.int32) * 65536
    torch.testing.assert_close(fe(pcm32, sampling_rate=SR)["input_ids"], fe(pcm16, sampling_rate=SR)["input_ids"])
    torch.testing.assert_close(fe(torch.from_numpy(clip), sampling_rate=SR)["input_ids"], ref)
    stereo = np.stack([clip + 0.1, clip - 0.1])  # mean = clip; a multi-channel clip comes inside a list
    torch.testing.assert_close(fe([stereo], sampling_rate=SR)["input_ids"], ref)
    torch.testing.assert_close(fe([clip, stereo], sampling_rate=SR)["input_ids"][1], ref[0])
    np_out = fe(clip, sampling_rate=SR, return_tensors="np")
    assert isinstance(np_out["input_ids"], np.ndarray) and (np_out["input_ids"] == ref.numpy()).all()


def test_a_2d_array_is_a_batch_of_mono_clips(tiny_codec_dir):
    """transformers' convention (Wav2Vec2, AST, Whisper): `(batch, time)` is a batch, not one multi-channel clip."""
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir, max_duration=1.0)
    fe.codec.double()
    clips = np.stack([_clip(0.5, 40), _clip(0.5, 41), _clip(0.5, 42)]).astype(np.float32)
    out = fe(clips, sampling_rate=SR)
    assert out["input_ids"].shape == (3, 4, 77)
    alone = torch.cat([fe(c, sampling_rate=SR)["input_ids"] for c in clips])
    torch.testing.assert_close(out["input_ids"], alone)
    torch.testing.assert_close(fe(torch.from_numpy(clips), sampling_rate=SR)["input_ids"], alone)
    torch.testing.assert_close(fe(list(clips), sampling_rate=SR)["input_ids"], alone)
    assert fe(clips[:1], sampling_rate=SR)["input_ids"].shape == (1, 4, 77)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((24000, 2), "channels-last clip"),  # (time, channels) would be 24000 clips of 2 samples
        ((2, 2, 24000), "ambiguous"),
        ((1, 1, 1, 24000), "ambiguous"),
    ],
)
def test_ambiguous_arrays_raise(tiny_feature_extractor, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_feature_extractor(np.zeros(shape, np.float32), sampling_rate=SR)


def test_integer_pcm_scaling():
    from audioformer.tokenization.feature_extraction_audioformer import _to_float_tensor

    cases = [
        (np.array([-32768, 0, 16384, 32767], np.int16), [-1.0, 0.0, 0.5, 32767 / 32768]),
        (np.array([-(2**31), 0, 2**30, 2**31 - 1], np.int32), [-1.0, 0.0, 0.5, (2**31 - 1) / 2**31]),
        (np.array([0, 128, 192, 255], np.uint8), [-1.0, 0.0, 0.5, 127 / 128]),
    ]  # 8-bit WAV is unsigned
    for pcm, expected in cases:
        for x in (pcm, torch.from_numpy(pcm)):
            got = _to_float_tensor(x)
            assert got.is_floating_point() and got.shape == (1, 4)
            np.testing.assert_allclose(got[0].double().numpy(), expected, rtol=0, atol=1e-12)


def test_resampled_input(tiny_feature_extractor):
    fe = tiny_feature_extractor
    clip16 = _clip(1.0, 12, sr=16000)
    by_hand = resample(torch.from_numpy(clip16).double(), 16000, SR).float()
    torch.testing.assert_close(
        fe(clip16, sampling_rate=16000)["input_ids"], fe(by_hand, sampling_rate=SR)["input_ids"]
    )
    assert fe(clip16, sampling_rate=16000)["attention_mask"].sum() == 75 + 2


def test_truncates_to_max_duration(tiny_feature_extractor):
    fe = tiny_feature_extractor
    long = _clip(3.0, 13)
    torch.testing.assert_close(
        fe(long, sampling_rate=SR)["input_ids"], fe(long[: 2 * SR], sampling_rate=SR)["input_ids"]
    )
    # resampled input is cut before resampling, yet equals resampling the whole clip and then cutting
    long44 = _clip(3.0, 14, sr=44100)
    whole = resample(torch.from_numpy(long44).double(), 44100, SR).float()[: 2 * SR]
    assert fe._prepare(long44, 44100).shape == (2 * SR,)
    torch.testing.assert_close(fe._prepare(long44, 44100), whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "audio, kwargs, message",
    [
        (np.zeros(100, np.float32), {}, "sampling_rate"),
        (np.zeros(0, np.float32), {"sampling_rate": SR}, "empty"),
        (np.array([0.0, np.nan] * 50, np.float32), {"sampling_rate": SR}, "NaN"),
        (np.array([0.0, np.inf] * 50, np.float32), {"sampling_rate": SR}, "NaN or Inf"),
        (np.zeros((1, 2, 100), np.float32), {"sampling_rate": SR}, "ambiguous"),
        ([np.zeros((1, 2, 100), np.float32)], {"sampling_rate": SR}, "channels-first"),
        (np.zeros((100, 2), np.float32), {"sampling_rate": SR}, "channels-last"),
        ([np.zeros((100, 2), np.float32)], {"sampling_rate": SR}, "transpose"),
        (np.zeros(100, np.float32), {"sampling_rate": SR, "padding": "do_not_pad"}, "padding"),
        (np.zeros((2, 0), np.float32), {"sampling_rate": SR}, "empty"),  # not "transpose it"
        (np.zeros((0, 100), np.float32), {"sampling_rate": SR}, "empty"),  # no channels: was a silent NaN mean
        ([], {"sampling_rate": SR}, "empty list"),
        ([np.zeros(100, np.float32), np.zeros(0, np.float32)], {"sampling_rate": SR}, "empty audio clip"),
        (np.zeros(100, np.int64), {"sampling_rate": SR}, "int16, int32 or uint8"),
        (np.zeros(100, np.float32), {"sampling_rate": 22050.5}, "whole number"),
        (np.zeros(100, np.float32), {"sampling_rate": "16000"}, "whole number"),
        (np.zeros(100, np.float32), {"sampling_rate": -16000}, "positive"),
    ],
)
def test_bad_input_raises(tiny_feature_extractor, audio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_feature_extractor(audio, **kwargs)


def test_bad_settings_raise(tiny_codec_dir):
    with pytest.raises(ValueError, match="codec_batch_size"):
        AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, codec_batch_size=0)
    with pytest.raises(ValueError, match="max_duration"):
        AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=0)
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    with pytest.raises(ValueError, match="max_samples"):  # the public low-level entry point checks its input too
        fe.encode_waveforms([torch.zeros(fe.max_samples + 1)])


def test_pipeline_style_input(tiny_feature_extractor):
    # pipeline("audio-classification") passes one 1-D array at fe.sampling_rate with return_tensors="pt"; from a
    # file it is ffmpeg_read's read-only np.frombuffer float32 buffer.
    fe = tiny_feature_extractor
    clip = _clip(0.6, 17).astype(np.float32)
    ref = fe(clip, sampling_rate=fe.sampling_rate, return_tensors="pt")
    read_only = np.frombuffer(clip.tobytes(), dtype=np.float32)
    assert not read_only.flags.writeable
    out = fe(read_only, sampling_rate=fe.sampling_rate, return_tensors="pt")
    assert isinstance(out["input_ids"], torch.Tensor) and out["input_ids"].shape == (1, 4, fe.max_frames + 2)
    torch.testing.assert_close(out["input_ids"], ref["input_ids"], rtol=0, atol=0)
    torch.testing.assert_close(out.to(torch.float16)["input_ids"], ref["input_ids"])  # the pipeline's dtype cast
    pcm = np.round(clip * 16384).astype(np.int16)
    big_endian = pcm.astype(">i2")  # e.g. AIFF samples; torch.from_numpy refuses non-native byte order
    torch.testing.assert_close(fe(big_endian, sampling_rate=SR)["input_ids"], fe(pcm, sampling_rate=SR)["input_ids"])


def test_batched_path_is_one_codec_call_with_padding_mask(tiny_codec_dir):
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir, codec_batch_size=8)
    calls = []
    encode = fe.codec.encode

    def spy(x, padding_mask=None, **kwargs):
        calls.append((tuple(x.shape), padding_mask.sum(-1).flatten().tolist()))
        return encode(x, padding_mask=padding_mask, **kwargs)

    fe.codec.encode = spy
    fe([_clip(0.5, 30), _clip(0.2, 31), _clip(0.3 + 7 / SR, 32)], sampling_rate=SR)
    # one call, zero-padded to the longest clip (whole frames), the mask marking each clip's real samples
    assert calls == [((3, 1, 38 * HOP), [12000, 4800, 7207])]
    calls.clear()
    fe.codec_batch_size = 2
    fe([_clip(0.5, 30), _clip(0.2, 31), _clip(0.3, 32)], sampling_rate=SR)
    assert [c[0] for c in calls] == [(2, 1, 38 * HOP), (1, 1, 23 * HOP)]
    # the default: one clip per call on CPU (measured faster there), the whole batch on an accelerator
    assert AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir)._clips_per_call(8) == 1
    assert AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, device="cuda")._clips_per_call(8) == 8


def test_unknown_bandwidth_raises(tiny_codec_dir):
    fe = AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, bandwidth=2.0)
    with pytest.raises(ValueError, match="[Bb]andwidth 2.0"):
        fe(np.zeros(1000, np.float32), sampling_rate=SR)


# ---------------------------------------------------------------- save / load / auto


def test_save_and_load(tiny_codec_dir, tmp_path):
    fe = AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0, device="cpu")
    _ = fe.codec
    fe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["codec_name_or_path"] == "./codec" and config["max_duration"] == 1.0  # a local codec travels
    assert fe.codec_name_or_path == tiny_codec_dir
    assert config["sampling_rate"] == 24000 and config["feature_size"] == 1
    assert config["auto_map"]["AutoFeatureExtractor"].endswith("AudioFormerFeatureExtractor")
    assert not any(k.startswith("_") for k in config)  # no codec, no device
    assert (tmp_path / "feature_extraction_audioformer.py").is_file()
    assert os.path.getsize(tmp_path / "preprocessor_config.json") < 5000

    loaded = AudioFormerFeatureExtractor.from_pretrained(tmp_path)
    assert loaded._codec is None and loaded.model_input_names == ["input_ids", "attention_mask"]
    assert loaded.codec_name_or_path == str(tmp_path / "codec")
    clip = _clip(0.8, 14)
    torch.testing.assert_close(loaded(clip, sampling_rate=SR)["input_ids"], fe(clip, sampling_rate=SR)["input_ids"])
    assert copy.deepcopy(loaded).to_dict() == loaded.to_dict()


def test_a_local_codec_travels_with_the_folder(tiny_codec_dir, tmp_path, monkeypatch):
    """A codec given by a relative path is saved in the folder, which then loads from any working directory, after
    being moved, and saved again elsewhere."""
    import shutil

    monkeypatch.chdir(Path(tiny_codec_dir).parent)
    fe = AudioFormerFeatureExtractor(codec_name_or_path=Path(tiny_codec_dir).name, max_duration=1.0)
    clip = _clip(0.7, 43)
    expected = fe(clip, sampling_rate=SR)["input_ids"]
    fe.save_pretrained(tmp_path / "made")
    shutil.move(tmp_path / "made", tmp_path / "moved")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = AudioFormerFeatureExtractor.from_pretrained(tmp_path / "moved")
    torch.testing.assert_close(loaded(clip, sampling_rate=SR)["input_ids"], expected)
    loaded.save_pretrained("again")  # the codec is copied along again, and saving in place copies nothing
    loaded.save_pretrained(tmp_path / "moved")
    assert sorted(p.name for p in (tmp_path / "moved" / "codec").iterdir()) == ["config.json", "model.safetensors"]
    again = AudioFormerFeatureExtractor.from_pretrained("again")
    torch.testing.assert_close(again(clip, sampling_rate=SR)["input_ids"], expected)
    # a codec given by a path starting with "." when loading is the caller's own path, not one inside the folder
    override = AudioFormerFeatureExtractor.from_pretrained("again", codec_name_or_path="./again/codec")
    assert override.codec_name_or_path == "./again/codec"


def test_a_saved_codec_resolves_in_the_hub_cache(tiny_codec_dir, tmp_path):
    """From the Hub, `./codec` is the `codec/` folder of the same repository (here a hand-made offline cache)."""
    from transformers import AutoFeatureExtractor

    fe = AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0)
    repo = tmp_path / "cache" / "models--org--with-codec"
    fe.save_pretrained(repo / "snapshots" / "0123abc")  # the Hub cache's layout: a snapshot and the ref to it
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    loaded = AudioFormerFeatureExtractor.from_pretrained("org/with-codec", cache_dir=tmp_path / "cache")
    assert Path(loaded.codec_name_or_path).parent.parent.parent.name == "models--org--with-codec"
    clip = _clip(0.4, 44)
    torch.testing.assert_close(loaded(clip, sampling_rate=SR)["input_ids"], fe(clip, sampling_rate=SR)["input_ids"])
    auto = AutoFeatureExtractor.from_pretrained("org/with-codec", cache_dir=tmp_path / "cache")
    assert auto.codec_name_or_path == loaded.codec_name_or_path


# ---------------------------------------------------------------- padding (Trainer's default collator)


def _examples(fe, seconds=(1.0, 0.5, 0.25), **kwargs):
    """One example per clip as a `datasets` transform yields them: `(4, T_i)` ids, a label, maybe a mask."""
    examples = []
    for i, s in enumerate(seconds):
        features = fe(_clip(s, 50 + i), sampling_rate=SR, padding="longest", **kwargs)
        examples.append({"input_ids": features["input_ids"][0], "labels": i, "mask": features["attention_mask"][0]})
    return examples


def test_default_collator_pads_along_time(tiny_feature_extractor):
    """`DataCollatorWithPadding(fe)`, which Trainer uses with `processing_class=fe`, pads (4, T) ids with <PAD>."""
    from transformers import DataCollatorWithPadding

    fe = tiny_feature_extractor
    examples = _examples(fe)
    batch = DataCollatorWithPadding(fe)([{k: e[k] for k in ("input_ids", "labels")} for e in examples])
    assert batch["input_ids"].shape == (3, 4, 77) and batch["attention_mask"].shape == (3, 77)
    assert batch["labels"].tolist() == [0, 1, 2]
    reference = fe([_clip(s, 50 + i) for i, s in enumerate((1.0, 0.5, 0.25))], sampling_rate=SR, padding="longest")
    torch.testing.assert_close(batch["input_ids"], reference["input_ids"])  # <PAD> after each clip's <EOA>
    torch.testing.assert_close(batch["attention_mask"], reference["attention_mask"])
    # a given mask is padded with 0; numpy in, numpy out; padded to a multiple
    with_mask = [{"input_ids": e["input_ids"].numpy(), "attention_mask": e["mask"].numpy()} for e in examples]
    out = fe.pad(with_mask, pad_to_multiple_of=8)
    assert isinstance(out["input_ids"], np.ndarray) and out["input_ids"].shape == (3, 4, 80)
    assert out["attention_mask"].sum(1).tolist() == reference["attention_mask"].sum(1).tolist()
    assert (out["input_ids"][:, :, 77:] == fe.pad_token_id).all()
    # single codebook rows (T,) pad the same way
    rows = fe.pad({"input_ids": [e["input_ids"][0].tolist() for e in examples]}, return_tensors="pt")
    torch.testing.assert_close(rows["input_ids"], reference["input_ids"][:, 0])


def test_pad_lengths_and_bad_input(tiny_feature_extractor):
    fe = tiny_feature_extractor
    examples = [{"input_ids": e["input_ids"]} for e in _examples(fe)]
    assert fe.pad(examples, padding="max_length", max_length=100)["input_ids"].shape == (3, 4, 100)
    cut = fe.pad(examples, padding="max_length", max_length=40, truncation=True)
    assert cut["input_ids"].shape == (3, 4, 40) and cut["attention_mask"][:2].all()
    assert (cut["input_ids"][:2, :, -1] == fe.eoa_token_id).all()  # a cut clip still ends in <EOA>
    torch.testing.assert_close(cut["input_ids"][2], fe.pad(examples)["input_ids"][2, :, :40])  # short: unchanged
    assert "attention_mask" not in fe.pad(examples, return_attention_mask=False)
    with pytest.raises(ValueError, match="max_length"):
        fe.pad(examples, padding="max_length")
    with pytest.raises(ValueError, match="truncate"):
        fe.pad(examples, padding="max_length", max_length=40)
    with pytest.raises(ValueError, match="one length"):
        fe.pad(examples, padding=False)
    with pytest.raises(ValueError, match="codebooks"):
        fe.pad([examples[0], {"input_ids": examples[1]["input_ids"][:2]}])
    with pytest.raises(ValueError, match="input_ids"):
        fe.pad([{"input_values": np.zeros(10)}])
    with pytest.raises(ValueError, match="attention_mask of shape"):
        fe.pad([{"input_ids": examples[0]["input_ids"], "attention_mask": np.ones(3)}])


def test_auto_feature_extractor(tiny_codec_dir):
    from transformers import AutoFeatureExtractor

    fe = AutoFeatureExtractor.from_pretrained(tiny_codec_dir)
    assert type(fe).__name__ == "AudioFormerFeatureExtractor"
    assert fe(_clip(0.5, 15), sampling_rate=SR)["input_ids"].shape == (1, 4, 152)


def test_auto_feature_extractor_finds_the_codec_of_a_moved_folder(tiny_codec_dir, tmp_path, monkeypatch):
    """transformers 5.25's AutoFeatureExtractor builds the extractor with `from_dict` alone (5.24 called this class's
    `from_pretrained`): a saved folder's `./codec` (here in a subfolder of the repository, the folder moved, loaded
    from another working directory) is still its own, and `device=` still reaches the codec."""
    from transformers import AutoFeatureExtractor

    fe = AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0)
    fe.save_pretrained(tmp_path / "made" / "feature_extractor")
    saved = json.loads((tmp_path / "made" / "feature_extractor" / "preprocessor_config.json").read_text())
    assert saved["codec_name_or_path"] == "./codec"
    shutil.move(tmp_path / "made", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    folder = tmp_path / "moved"
    loaded = AutoFeatureExtractor.from_pretrained(folder, subfolder="feature_extractor", device="cpu")
    assert loaded.codec_name_or_path == str(folder / "feature_extractor" / "codec") and loaded._device == "cpu"
    clip = _clip(0.6, 17)
    torch.testing.assert_close(loaded(clip, sampling_rate=SR)["input_ids"], fe(clip, sampling_rate=SR)["input_ids"])
    # the caller's own codec is left as given, and so is a dict built outside any from_pretrained
    own = AutoFeatureExtractor.from_pretrained(folder, subfolder="feature_extractor", codec_name_or_path="./c")
    assert own.codec_name_or_path == "./c"
    assert AudioFormerFeatureExtractor.from_dict({**saved, "codec_name_or_path": "./c"}).codec_name_or_path == "./c"


def test_registered_for_audioformer_config():
    configuration = pytest.importorskip("audioformer.modeling_audioformer.configuration_audioformer")
    from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING

    assert FEATURE_EXTRACTOR_MAPPING[configuration.AudioFormerConfig] is AudioFormerFeatureExtractor


def test_to_device(tiny_codec_dir):
    fe = AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir).to("cpu")
    assert fe.device == torch.device("cpu") and next(fe.codec.parameters()).device.type == "cpu"
    assert AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir, device="cpu")._device == "cpu"
    assert AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, device="cpu").device.type == "cpu"
    if torch.cuda.is_available():
        fe.to("cuda")
        out = fe(_clip(0.5, 16), sampling_rate=SR)
        assert next(fe.codec.parameters()).device.type == "cuda" and out["input_ids"].device.type == "cpu"


# ---------------------------------------------------------------- code-id tokenizer


def test_code_tokenizer_round_trip(tmp_path):
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from audioformer.tokenization import AudioFormerTokenizer

    tok = AudioFormerTokenizer()
    assert len(tok) == 1028
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.mask_token_id) == (0, 1, 2, 1027)
    enc = tok("<c0> <MASK> <c1023>")
    assert enc["input_ids"] == [0, 3, 1027, 1026, 2]
    assert tok.decode(enc["input_ids"]) == "<BOA> <c0> <MASK> <c1023> <EOA>"
    assert tok.get_special_tokens_mask(enc["input_ids"], already_has_special_tokens=True) == [1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match="Unknown token"):
        tok("<c1024>")
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "AudioFormerTokenizer" and loaded("<c7>")["input_ids"] == [0, 10, 2]
    batch = DataCollatorForLanguageModeling(tok, mlm_probability=0.99)([tok("<c1> <c2> <c3>"), tok("<c4>")])
    assert batch["input_ids"].shape == (2, 5) and batch["input_ids"][1, 3:].eq(1).all()
    assert batch["labels"][1, 3:].eq(-100).all() and batch["labels"][:, 0].eq(-100).all()


@pytest.mark.slow
def test_loads_as_remote_code_without_the_package(tiny_codec_dir, tmp_path):
    # A fresh interpreter outside the repository: the class comes from the copied feature_extraction file.
    import subprocess
    import sys

    code = (
        "import numpy as np; from transformers import AutoFeatureExtractor; "
        f"fe = AutoFeatureExtractor.from_pretrained({tiny_codec_dir!r}, trust_remote_code=True); "
        "assert type(fe).__module__.startswith('transformers_modules'), type(fe).__module__; "
        "print(tuple(fe(np.zeros(4800, np.float32) + 0.1, sampling_rate=24000)['input_ids'].shape))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("(1, 4, 152)")


@pytest.mark.slow
def test_trainer_with_the_feature_extractor_as_processing_class(tiny_codec_dir, tmp_path):
    """The flow of transformers' `examples/pytorch/audio-classification/run_audio_classification.py`, unchanged
    but for the data loading (datasets' audio decoding needs torchcodec): an audio folder, the feature extractor in a
    `set_transform` (input_ids only, padded to max_duration), `Trainer(processing_class=feature_extractor)` and its
    default collator, starting from a pretraining checkpoint, then evaluation, prediction and saving."""
    import soundfile as sf
    from transformers import (
        AutoConfig,
        AutoFeatureExtractor,
        AutoModelForAudioClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    import audioformer.modeling_audioformer  # noqa: F401  (registers the Auto classes)
    from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForMaskedLM
    from audioformer.tokenization.audio_io import decode_audio, load_audio_dataset

    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("validation", 3)):
        for label in ("noise", "tone"):
            (tmp_path / "data" / split / label).mkdir(parents=True)
            for i in range(count):
                t = np.arange(int(rng.uniform(0.3, 1.8) * 16000)) / 16000
                audio = np.sin(2 * np.pi * 440 * t) if label == "tone" else rng.standard_normal(t.size) * 0.3
                sf.write(tmp_path / "data" / split / label / f"{i}.wav", audio.astype(np.float32), 16000)
    checkpoint = tmp_path / "pretrained"  # --model_name_or_path: a pretraining checkpoint with its feature extractor
    torch.manual_seed(0)
    config = AudioFormerConfig(**TINY_MODEL)
    AudioFormerForMaskedLM(config).save_pretrained(checkpoint)
    AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir).save_pretrained(checkpoint)

    # what the script does
    raw_datasets = load_audio_dataset(data_dir=str(tmp_path / "data")).class_encode_column("label")  # ClassLabel
    feature_extractor = AutoFeatureExtractor.from_pretrained(checkpoint, return_attention_mask=True)
    model_input_name = feature_extractor.model_input_names[0]

    def transforms(batch):
        wavs = [decode_audio(audio)[0].mean(0) for audio in batch["audio"]]
        inputs = feature_extractor(wavs, sampling_rate=16000)
        return {model_input_name: inputs.get(model_input_name), "labels": list(batch["label"])}

    labels = raw_datasets["train"].features["label"].names
    config = AutoConfig.from_pretrained(
        checkpoint,
        num_labels=len(labels),
        label2id={label: str(i) for i, label in enumerate(labels)},
        id2label={str(i): label for i, label in enumerate(labels)},
        finetuning_task="audio-classification",
    )
    model = AutoModelForAudioClassification.from_pretrained(checkpoint, config=config)
    for split in raw_datasets:
        raw_datasets[split].set_transform(transforms, output_all_columns=False)

    def compute_metrics(eval_pred):
        return {"accuracy": float((eval_pred.predictions.argmax(1) == eval_pred.label_ids).mean())}

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        remove_unused_columns=False,  # as the script's README runs it: the transform needs the audio column
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        max_steps=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=raw_datasets["train"],
        eval_dataset=raw_datasets["validation"],
        compute_metrics=compute_metrics,
        processing_class=feature_extractor,
    )
    assert isinstance(trainer.data_collator, DataCollatorWithPadding)
    trainer.train()
    assert all(np.isfinite(log["loss"]) for log in trainer.state.log_history if "loss" in log)
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and np.isfinite(metrics["eval_loss"])
    predictions = trainer.predict(raw_datasets["validation"]).predictions
    trainer.save_model()

    # the collator's mask left the padding out: the same logits as clips padded only to the longest one
    wavs = [decode_audio(audio)[0].mean(0) for audio in raw_datasets["validation"].with_format(None)["audio"]]
    model.eval()
    with torch.no_grad():
        expected = model(**feature_extractor(wavs, sampling_rate=16000, padding="longest")).logits
    np.testing.assert_allclose(predictions, expected.numpy(), atol=1e-5)
    reloaded = AutoModelForAudioClassification.from_pretrained(tmp_path / "out").eval()
    reloaded_fe = AutoFeatureExtractor.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        again = reloaded(**reloaded_fe(wavs, sampling_rate=16000)).logits
    np.testing.assert_allclose(again.numpy(), expected.numpy(), atol=1e-5)
    assert reloaded.config.id2label == dict(enumerate(labels))


@pytest.mark.parametrize("reference", ["../../..", "./codec/../../elsewhere", "..", "/etc", "codec/../../x", "a/b/c"])
def test_a_saved_codec_reference_stays_inside_the_folder(tiny_codec_dir, tmp_path, reference):
    """A preprocessor_config.json may not point its codec outside its folder (it loaded any codec on the machine)."""
    from transformers import AutoFeatureExtractor

    shutil.copytree(tiny_codec_dir, tmp_path / "outside")  # a codec the reference could reach
    folder = tmp_path / "a" / "b" / "model"
    AudioFormerFeatureExtractor(codec_name_or_path=tiny_codec_dir, max_duration=1.0).save_pretrained(folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config["codec_name_or_path"] = reference
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    for load in (AudioFormerFeatureExtractor.from_pretrained, AutoFeatureExtractor.from_pretrained):
        with pytest.raises(
            ValueError, match=r"codec_name_or_path=.* leaves the folder: .* inside it \(e.g. './codec'\)"
        ):
            load(folder)
    # the caller's own path is still the caller's choice, and references inside the folder or to the Hub load
    AudioFormerFeatureExtractor.from_pretrained(folder, codec_name_or_path=str(tmp_path / "outside"))
    for fine in ("./codec", "./codec/../codec", "facebook/encodec_24khz"):
        config["codec_name_or_path"] = fine
        (folder / "preprocessor_config.json").write_text(json.dumps(config))
        AudioFormerFeatureExtractor.from_pretrained(folder)  # the codec itself loads lazily
