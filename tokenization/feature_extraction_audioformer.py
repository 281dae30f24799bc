# Copyright 2026 The AudioFormer Authors.
# Licensed under the Apache License, Version 2.0.
"""
AudioFormer feature extractor: raw audio -> EnCodec code ids (paper section 3.1 and 4.2).

This file is published as Hub remote code, so it imports only numpy, torch, transformers and, beside it in a published
folder, `configuration_audioformer.py`, which defines the token-id contract: `<BOA>`=0, `<PAD>`=1, `<EOA>`=2,
`<MASK>`=1027, an EnCodec code `c` becomes `c + 3`.
A clip of `n` codec frames becomes, for each of the 4 codebooks (3 kbps), the row
`[BOA, c_1+3, ..., c_n+3, EOA, PAD, ...]`; `attention_mask` is 1 on BOA..EOA.

Padding convention: a clip is zero-padded to a whole number of codec frames (hop 320 samples) and then to the
batch length; EnCodec 24 kHz is causal (causal convolutions, unidirectional LSTM), so frame `j` only sees samples
`< (j + 1) * hop` and the codes of a clip do not depend on what it is batched with. They equal
`EncodecModel.encode(clip_zero_padded_to_hop_multiple, bandwidth=3.0)` + 3, which is `EncodecModel.encode(clip)`
+ 3 whenever the clip length is a multiple of 320 samples (all 10 s AudioSet clips).
"""

import math
import os

import numpy as np
import torch
from transformers import BatchFeature, EncodecModel, SequenceFeatureExtractor


try:  # this project: the contract lives in the model package
    from modeling_audioformer.configuration_audioformer import (
        BOA_TOKEN_ID,
        CODE_OFFSET,
        DEFAULT_CODEC,
        EOA_TOKEN_ID,
        PAD_TOKEN_ID,
        save_remote_code,
    )
except ImportError:  # Hub remote code: configuration_audioformer.py sits beside this file
    from .configuration_audioformer import (
        BOA_TOKEN_ID,
        CODE_OFFSET,
        DEFAULT_CODEC,
        EOA_TOKEN_ID,
        PAD_TOKEN_ID,
        save_remote_code,
    )


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


def resample_poly(waveform: torch.Tensor, orig_sr: int, target_sr: int, chunk: int = 32768) -> torch.Tensor:
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


def _to_float_tensor(clip) -> torch.Tensor:
    """One clip (numpy or torch, float or integer PCM) -> float tensor `(C, T)`."""
    if isinstance(clip, (list, tuple)):
        clip = np.asarray(clip)
    if isinstance(clip, np.ndarray):
        if clip.dtype == np.float16:
            clip = clip.astype(np.float32)
        elif not clip.dtype.isnative or not clip.flags.writeable:  # e.g. np.frombuffer in the pipeline's ffmpeg_read
            clip = clip.astype(clip.dtype.newbyteorder("="))
        clip = torch.from_numpy(np.ascontiguousarray(clip))
    if not isinstance(clip, torch.Tensor):
        raise ValueError(f"Audio must be a numpy array or torch tensor, got {type(clip).__name__}.")
    if clip.dtype == torch.int16:
        clip = clip.to(torch.float32) / 32768.0
    elif clip.dtype == torch.int32:
        clip = clip.to(torch.float64) / 2147483648.0
    elif clip.dtype == torch.uint8:
        clip = (clip.to(torch.float32) - 128.0) / 128.0
    elif not clip.is_floating_point():
        raise ValueError(f"Unsupported audio dtype {clip.dtype}: use float, int16, int32 or uint8 PCM.")
    elif clip.dtype in (torch.float16, torch.bfloat16):
        clip = clip.to(torch.float32)
    shape = tuple(clip.shape)
    if clip.ndim == 1:
        clip = clip[None]
    elif clip.ndim != 2:
        raise ValueError(f"Each clip must be mono (T,) or channels-first (C, T); got shape {shape}.")
    if clip.numel() == 0:
        raise ValueError(f"Got an empty audio clip (shape {shape}, no samples).")
    if clip.shape[0] > clip.shape[1]:
        raise ValueError(
            f"Got a clip of shape {tuple(clip.shape)}: audio must be channels-first (C, T); transpose it."
        )
    if not torch.isfinite(clip).all():
        raise ValueError("Audio contains NaN or Inf values.")
    return clip


class AudioFormerFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns raw audio into EnCodec code ids for AudioFormer.

    Args:
        codec_name_or_path (`str`, defaults to `"facebook/encodec_24khz"`):
            Hub name or local folder of a transformers `EncodecModel` (24 kHz, causal, no chunking). Loaded lazily
            on first use; it is referenced, not saved, by `save_pretrained`.
        bandwidth (`float`, defaults to 3.0):
            EnCodec target bandwidth in kbps; 3.0 = 4 codebooks.
        max_duration (`float`, defaults to 10.0):
            Clips are truncated to this many seconds; `padding="max_length"` pads to it.
        sampling_rate (`int`, defaults to 24000):
            Rate the codec expects; input at other rates is resampled (`resample_poly`).
        codec_batch_size (`int`, *optional*):
            Clips per codec call. A call zero-pads its clips to the longest one (whole frames) and runs one
            `EncodecModel.encode(batch, padding_mask=mask, bandwidth=...)`; the codec is causal, so the codes do not
            depend on the grouping (bit-exact in float64; in float32 a near-tie can flip ~1e-4 of codes).
            Default (None): the whole batch in one call on an accelerator; one clip per call on CPU, because there
            the batched call measured slower than a per-clip loop (2-core CPU, 8 x 10 s clips: 1.45 vs 2.67 clips/s
            for the full-size 24 kHz EnCodec, 10 vs 30 for the tiny test codec; large activations make EnCodec's
            convolutions memory-bound). `benchmarks/bench_feature_extractor.py` measures both paths on your machine;
            pass `codec_batch_size` to choose.
        device (`str`, *optional*):
            Device of the codec (runtime only, not saved). Also settable with `.to(device)`.
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        codec_name_or_path: str = DEFAULT_CODEC,
        bandwidth: float = 3.0,
        max_duration: float = 10.0,
        feature_size: int = 1,
        sampling_rate: int = 24000,
        padding_value: float = 0.0,
        hop_length: int = 320,
        boa_token_id: int = BOA_TOKEN_ID,
        pad_token_id: int = PAD_TOKEN_ID,
        eoa_token_id: int = EOA_TOKEN_ID,
        code_offset: int = CODE_OFFSET,
        codec_batch_size: int | None = None,
        device: str | None = None,
        **kwargs,
    ):
        kwargs.pop("return_attention_mask", None)
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=True,
            **kwargs,
        )
        if max_duration is None or max_duration <= 0:
            raise ValueError(f"max_duration must be a positive number of seconds, got {max_duration}.")
        if codec_batch_size is not None and int(codec_batch_size) < 1:
            raise ValueError(f"codec_batch_size must be >= 1 (or None for the default), got {codec_batch_size}.")
        self.codec_name_or_path = str(codec_name_or_path)
        self.bandwidth = float(bandwidth)
        self.max_duration = float(max_duration)
        self.hop_length = int(hop_length)
        self.boa_token_id = boa_token_id
        self.pad_token_id = pad_token_id
        self.eoa_token_id = eoa_token_id
        self.code_offset = code_offset
        self.codec_batch_size = codec_batch_size
        self._device = device
        self._codec = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, device=None, **kwargs):
        """`FeatureExtractionMixin.from_pretrained`, plus `device=` for the codec."""
        out = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if device is not None:
            (out[0] if isinstance(out, tuple) else out).to(device)
        return out

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        """`FeatureExtractionMixin.save_pretrained`; with the Auto class registered (importing `tokenization` does) it
        also writes the remote code, this file and `configuration_audioformer.py` (see `save_remote_code`)."""
        if self._auto_class is None:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        self.auto_map = {self._auto_class: save_remote_code(self, save_directory)}
        self._auto_class = None  # an instance attribute over the class's: the code is written above
        try:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:
            del self._auto_class

    # ---- serialisation: the codec and the device are runtime state, not configuration ----
    def to_dict(self):
        output = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        output["feature_extractor_type"] = self.__class__.__name__
        return dict(output)

    @property
    def max_samples(self) -> int:
        return int(round(self.max_duration * self.sampling_rate))

    @property
    def max_frames(self) -> int:
        """Codec frames of a `max_duration` clip: 750 for 10 s at 24 kHz, hop 320."""
        return math.ceil(self.max_samples / self.hop_length)

    @property
    def codec(self) -> EncodecModel:
        """The `EncodecModel`, loaded on first access, in eval mode on `self.device`."""
        if self._codec is None:
            codec = EncodecModel.from_pretrained(self.codec_name_or_path)
            self.set_codec(codec)
        return self._codec

    def set_codec(self, codec: EncodecModel):
        """Uses an already loaded `EncodecModel` (checked against this extractor's settings) instead of
        loading `codec_name_or_path`; returns self."""
        cfg = codec.config
        if cfg.sampling_rate != self.sampling_rate:
            raise ValueError(f"Codec samples at {cfg.sampling_rate} Hz but sampling_rate is {self.sampling_rate}.")
        if cfg.hop_length != self.hop_length:
            raise ValueError(f"Codec hop length is {cfg.hop_length} but hop_length is {self.hop_length}.")
        if cfg.chunk_length_s is not None or cfg.normalize or cfg.audio_channels != 1:
            raise ValueError("AudioFormer needs a mono, unchunked, unnormalised EnCodec (the 24 kHz model).")
        if self.bandwidth not in cfg.target_bandwidths:
            raise ValueError(
                f"Bandwidth {self.bandwidth} not offered by the codec; choose one of {cfg.target_bandwidths}."
            )
        codec.eval()
        if self._device is not None:
            codec.to(self._device)
        self._codec = codec
        return self

    @property
    def device(self) -> torch.device:
        return torch.device(self._device) if self._device is not None else torch.device("cpu")

    @device.setter
    def device(self, value):
        self.to(value)

    def to(self, device):
        """Moves the codec to `device` (e.g. `"cuda"`); returns self."""
        self._device = str(device)
        if self._codec is not None:
            self._codec.to(self._device)
        return self

    @property
    def num_codebooks(self) -> int:
        return self.codec.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth)

    def __call__(
        self,
        audio,
        sampling_rate: int | None = None,
        padding: str | bool = "max_length",
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            audio: one clip or a list of clips; each numpy or torch, float or int16/int32/uint8 PCM, mono `(T,)`
                or channels-first `(C, T)` (down-mixed to mono).
            sampling_rate (`int`): rate of `audio` in Hz; required.
            padding (`"max_length"` or `"longest"`): pad to `max_duration` (paper) or to the longest clip.
            return_tensors: `"pt"` (default), `"np"` or None (lists).

        Returns:
            `BatchFeature` with `input_ids` `(B, num_codebooks, frames + 2)` (int64) and `attention_mask`
            `(B, frames + 2)`, where frames = `max_frames` or the longest clip's frame count.
        """
        if sampling_rate is None:
            raise ValueError(
                "sampling_rate is required: pass the rate of the audio, e.g. fe(audio, sampling_rate=16000)."
            )
        if (
            isinstance(sampling_rate, bool)
            or not isinstance(sampling_rate, (int, float, np.number))
            or not (sampling_rate > 0 and float(sampling_rate).is_integer())
        ):
            raise ValueError(f"sampling_rate must be a positive whole number of Hz, got {sampling_rate!r}.")
        sampling_rate = int(sampling_rate)
        if padding is True:
            padding = "longest"
        if padding not in ("max_length", "longest"):
            raise ValueError(f"padding must be 'max_length' or 'longest', got {padding!r}.")

        if isinstance(audio, (list, tuple)) and len(audio) == 0:
            raise ValueError("Got an empty list of clips.")
        is_batched = isinstance(audio, (list, tuple)) and not np.isscalar(audio[0])
        clips = list(audio) if is_batched else [audio]
        waveforms = [self._prepare(clip, sampling_rate) for clip in clips]
        codes, lengths = self.encode_waveforms(waveforms, padding=padding)
        input_ids, attention_mask = self.wrap_codes(codes, lengths)
        data = {"input_ids": input_ids, "attention_mask": attention_mask}
        if return_tensors in (None, "np"):
            data = {k: v.numpy() for k, v in data.items()}
            if return_tensors is None:
                data = {k: v.tolist() for k, v in data.items()}
            return BatchFeature(data)
        return BatchFeature(data, tensor_type=return_tensors)

    def _prepare(self, clip, sampling_rate: int) -> torch.Tensor:
        """One clip -> mono float waveform `(T,)` at `self.sampling_rate`, truncated to `max_duration`."""
        wav = _to_float_tensor(clip).mean(dim=0)
        if int(sampling_rate) != self.sampling_rate:
            # cut first (long files), keeping the resampling filter's reach (10 taps per side at the lower rate)
            reach = math.ceil(10 * max(1.0, sampling_rate / self.sampling_rate)) + 1
            wav = wav[: math.ceil(self.max_duration * sampling_rate) + reach]
            wav = resample_poly(wav.to(torch.float64), sampling_rate, self.sampling_rate).to(torch.float32)
        return wav[: self.max_samples]

    def _clips_per_call(self, batch_size: int) -> int:
        if self.codec_batch_size is not None:
            return int(self.codec_batch_size)
        # On CPU, EnCodec's memory-bound layers run ~1.8x slower on a (8, 1, 240000) batch than clip by clip
        # (benchmarks/bench_feature_extractor.py); on an accelerator one call keeps the device busy.
        return 1 if self.device.type == "cpu" else batch_size

    @torch.no_grad()
    def encode_waveforms(self, waveforms: list, padding: str = "max_length") -> tuple[torch.Tensor, torch.Tensor]:
        """
        Encodes mono waveforms at `sampling_rate`: the whole batch in one codec call with EnCodec's padding mask
        (or `codec_batch_size` clips per call), each call only as long as its longest clip (rounded up to whole
        frames); the codec is causal, so codes do not depend on the grouping or the padding.

        Args:
            waveforms: list of B tensors `(T_i,)`, T_i <= max_samples.
        Returns:
            codes `(B, K, F)` int64 on CPU (EnCodec codes 0..1023, 0 past each clip's length), F = `max_frames`
            (padding="max_length") or the longest clip's frames, and lengths `(B,)` frames per clip,
            `ceil(T_i / hop)`.
        """
        codec = self.codec
        dtype = next(codec.parameters()).dtype
        for w in waveforms:
            if w.ndim != 1 or not 0 < w.shape[-1] <= self.max_samples:
                raise ValueError(
                    f"encode_waveforms takes mono waveforms (T,) with 0 < T <= max_samples ({self.max_samples}); "
                    f"got shape {tuple(w.shape)}. Use __call__ (or _prepare) to down-mix, resample and truncate."
                )
        lengths = torch.tensor([math.ceil(w.shape[-1] / self.hop_length) for w in waveforms])
        frames = self.max_frames if padding == "max_length" else int(lengths.max())
        codes = torch.zeros(len(waveforms), self.num_codebooks, frames, dtype=torch.long)
        step = self._clips_per_call(len(waveforms))
        for start in range(0, len(waveforms), step):
            group = waveforms[start : start + step]
            total = int(lengths[start : start + step].max()) * self.hop_length
            batch = torch.zeros(len(group), 1, total, dtype=dtype)
            mask = torch.zeros(len(group), 1, total, dtype=torch.bool)
            for i, w in enumerate(group):
                batch[i, 0, : w.shape[-1]] = w.to(dtype)
                mask[i, 0, : w.shape[-1]] = True
            out = codec.encode(batch.to(self.device), padding_mask=mask.to(self.device), bandwidth=self.bandwidth)
            group_codes = out.audio_codes[0]  # (b, K, f): the 24 kHz model encodes each clip as one chunk
            codes[start : start + len(group), :, : group_codes.shape[-1]] = group_codes.cpu()
        return codes, lengths

    def wrap_codes(self, codes: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes `(B, K, F)`, lengths `(B,)` -> input_ids `(B, K, F + 2)` = [BOA, c+3, ..., EOA, PAD...] and
        attention_mask `(B, F + 2)`."""
        bsz, num_q, frames = codes.shape
        pos = torch.arange(frames + 2)
        ids = torch.full((bsz, num_q, frames + 2), self.pad_token_id, dtype=torch.long)
        ids[:, :, 0] = self.boa_token_id
        inside = pos[None, 1:-1] <= lengths[:, None]  # (B, F): code positions 1..n_i
        ids[:, :, 1:-1] = torch.where(inside[:, None, :], codes + self.code_offset, ids[:, :, 1:-1])
        ids.scatter_(2, (lengths + 1)[:, None, None].expand(bsz, num_q, 1), self.eoa_token_id)
        attention_mask = (pos[None, :] <= lengths[:, None] + 1).long()
        return ids, attention_mask


__all__ = ["AudioFormerFeatureExtractor", "resample_poly"]
