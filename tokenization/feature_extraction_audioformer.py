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

Input convention (transformers' audio feature extractors: Wav2Vec2, AST, Whisper): a 1-D array is one mono clip, a
2-D array `(batch, time)` a batch of mono clips, a list holds clips, each mono `(time,)` or multi-channel
`(channels, time)` (down-mixed to mono).
"""

import inspect
import math
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from transformers import AutoFeatureExtractor, BatchFeature, EncodecModel, SequenceFeatureExtractor
from transformers.utils import PaddingStrategy, TensorType, cached_file


try:  # this project: the contract lives in the model package
    from audioformer.modeling_audioformer.configuration_audioformer import (
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


# `codec_name_or_path` values starting with "." are relative to the folder of `preprocessor_config.json`; a local
# codec is saved there under this name, so the folder can be moved or published with its codec.
CODEC_FOLDER = "codec"
_CODEC_FILES = ("config.json", "model.safetensors")


def _copy_codec_files(source: str, destination: str) -> bool:
    """Copies a saved codec's `config.json` and `model.safetensors` from `source` to `destination` (without loading
    it: loading draws from the global RNG and takes time); False if `source` does not hold both (e.g. a sharded or
    a pickled codec), so that the caller saves the loaded codec instead."""
    if not all(os.path.isfile(os.path.join(source, name)) for name in _CODEC_FILES):
        return False
    os.makedirs(destination, exist_ok=True)
    for name in _CODEC_FILES:
        shutil.copyfile(os.path.join(source, name), os.path.join(destination, name))
    return True


# A Hub repository id, "name" or "org/name" (what a saved `codec_name_or_path` not starting with "." must be).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


# Input sampling rates accepted, in Hz: from telephone-band recordings down to 1 kHz up to the 384 kHz of studio
# interfaces. A rate is a number in the request, and outside this range it only makes resampling expensive.
MIN_SAMPLING_RATE = 1_000
MAX_SAMPLING_RATE = 384_000

try:  # python-soxr (what librosa uses): its cost per sample does not depend on the rate ratio's prime factors
    import soxr
except ImportError:  # Hub remote code imports only numpy, torch and transformers: soxr is asked for when needed
    soxr = None
# Samples, at the lower of the two rates, that a resampled sample depends on on each side (see `_prepare`).
RESAMPLING_REACH = 200


def check_sampling_rate(sampling_rate, name: str = "sampling_rate") -> int:
    """`sampling_rate` as an int, or a ValueError naming it: a whole number of Hz (not a bool) from
    `MIN_SAMPLING_RATE` to `MAX_SAMPLING_RATE`."""
    if (
        isinstance(sampling_rate, bool)
        or not isinstance(sampling_rate, (int, float, np.number))
        or not (sampling_rate > 0 and float(sampling_rate).is_integer())
    ):
        raise ValueError(f"{name} must be a positive whole number of Hz, got {sampling_rate!r}.")
    if not MIN_SAMPLING_RATE <= sampling_rate <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"{name}={int(sampling_rate)} Hz is outside the accepted range {MIN_SAMPLING_RATE} to "
            f"{MAX_SAMPLING_RATE} Hz: resample the audio to a common rate (e.g. 16000, 24000 or 48000 Hz) first."
        )
    return int(sampling_rate)


def resample(waveform: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """
    Anti-aliased resampling of `waveform` `(..., T)` from `orig_sr` to `target_sr` Hz, both in the accepted range
    (`check_sampling_rate`), by python-soxr at its very-high quality (`"VHQ"`, float64): zero boundary, no delay.
    Returns `(..., ceil(T * target_sr / orig_sr))` (scipy's `resample_poly` length) in the dtype and on the device
    of `waveform`.

    Without soxr installed (Hub remote code may run where it is not) this raises an ImportError naming it, rather
    than resampling differently: a fallback filter would change ~10% of the codes (`benchmarks/bench_resampling.py`).
    """
    orig_sr = check_sampling_rate(orig_sr, "orig_sr")
    target_sr = check_sampling_rate(target_sr, "target_sr")
    if orig_sr == target_sr:
        return waveform
    if soxr is None:
        raise ImportError(
            f"Resampling audio from {orig_sr} Hz to {target_sr} Hz needs python-soxr: `pip install soxr` "
            f"(or pass audio at {target_sr} Hz)."
        )
    length = waveform.shape[-1]
    out_len = -(-length * target_sr // orig_sr)
    # soxr rounds the output length to nearest; a few zeros more (the zero boundary) give the ceil of scipy's
    pad = -(-orig_sr // target_sr) + 1
    x = waveform.detach().to("cpu", torch.float64).reshape(-1, length).t().numpy()  # (T, channels), soxr's layout
    x = np.concatenate([x, np.zeros((pad, x.shape[1]))])
    y = soxr.resample(x, orig_sr, target_sr, quality="VHQ")[:out_len]
    y = torch.from_numpy(np.ascontiguousarray(y.T)).reshape(*waveform.shape[:-1], out_len)
    return y.to(device=waveform.device, dtype=waveform.dtype)


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


def check_codec_reference(value: str, source: str) -> None:
    """A `codec_name_or_path` read from `source`'s `preprocessor_config.json` must be a path inside that folder
    (`"./codec"`, `"."`) or a Hub id (`"org/name"`): a published folder must not load a codec from elsewhere on the
    machine (`"../../.."`, an absolute path). Raises a ValueError saying so."""
    if value.startswith("."):
        path = os.path.normpath(value)
        inside = not os.path.isabs(path) and path != ".." and not path.startswith(".." + os.sep)
    else:
        inside = HUB_ID.fullmatch(value) is not None and ".." not in value
    if not inside:
        raise ValueError(
            f"preprocessor_config.json of {source} gives codec_name_or_path={value!r}, which leaves the folder: a "
            "saved feature extractor's codec must be inside it (e.g. './codec') or a Hub id ('org/name'). Pass "
            "codec_name_or_path=... to from_pretrained to load a codec from elsewhere on purpose."
        )


def resolve_relative_codec(source: str, relative_path: str, hub_kwargs: dict) -> str:
    """The local folder of the codec saved at `relative_path` inside `source`: a folder, or a Hub repository whose
    codec files are fetched into the Hub cache."""
    relative_path = os.path.normpath(relative_path)
    if os.path.isdir(source):
        return os.path.abspath(os.path.join(source, relative_path))
    subfolder = "" if relative_path == "." else relative_path.replace(os.sep, "/")
    config_file = cached_file(source, "config.json", subfolder=subfolder, **hub_kwargs)
    cached_file(source, "model.safetensors", subfolder=subfolder, **hub_kwargs)
    return os.path.dirname(config_file)


def _loading_source() -> tuple[str, str, dict] | None:
    """`(folder or Hub id, subfolder, Hub kwargs)` of the `from_pretrained` that is building a feature extractor with
    `from_dict`: the nearest call up the stack of `AudioFormerFeatureExtractor.from_pretrained` or of
    `AutoFeatureExtractor.from_pretrained`, which from transformers 5.25 calls `from_dict` with the saved dict alone,
    without this class's `from_pretrained`. None when neither is on the stack (a dict of the caller's own)."""
    loaders = (
        AudioFormerFeatureExtractor.from_pretrained.__func__.__code__,
        AutoFeatureExtractor.from_pretrained.__func__.__code__,
    )
    frame = inspect.currentframe()
    while frame is not None and frame.f_code not in loaders:
        frame = frame.f_back
    if frame is None:
        return None
    local = frame.f_locals
    del frame  # a frame holds its callers: do not keep it alive
    hub_kwargs = {
        key: local.get(key)
        for key in ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only")
    }
    return str(local["pretrained_model_name_or_path"]), local.get("subfolder") or "", hub_kwargs


def split_clips(audio: Any) -> list:
    """`audio` as a list of clips, by transformers' convention: a 1-D array (or a list of numbers) is one mono clip, a
    2-D array `(batch, time)` a batch of mono clips, a list or tuple holds clips (each `(time,)` or
    `(channels, time)`). Anything else is ambiguous and raises a ValueError."""
    if isinstance(audio, (list, tuple)):
        if len(audio) == 0:
            raise ValueError("Got an empty list of clips.")
        return [audio] if np.isscalar(audio[0]) else list(audio)
    if not isinstance(audio, (np.ndarray, torch.Tensor)):
        raise ValueError(f"Audio must be a numpy array, a torch tensor or a list of them, got {type(audio).__name__}.")
    if audio.ndim == 1:
        return [audio]
    if audio.ndim == 2:
        if audio.shape[0] == 0:
            raise ValueError(f"Got an empty batch of clips (shape {tuple(audio.shape)}).")
        if audio.shape[0] > audio.shape[1] > 0:
            raise ValueError(
                f"Got a 2-D array of shape {tuple(audio.shape)}: a 2-D array is a batch of mono clips (batch, time), "
                "and this one has more rows than samples, like one channels-last clip. Pass a multi-channel clip "
                "channels-first inside a list: [clip.T] for a (time, channels) array."
            )
        return list(audio)
    raise ValueError(
        f"Got a {audio.ndim}-D array of shape {tuple(audio.shape)}, which is ambiguous: pass one clip (time,), a "
        "batch of mono clips (batch, time), or a list of clips, each (time,) or (channels, time)."
    )


class AudioFormerFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns raw audio into EnCodec code ids for AudioFormer.

    Args:
        codec_name_or_path (`str`, defaults to `"facebook/encodec_24khz"`):
            Hub name or local folder of a transformers `EncodecModel` (24 kHz, causal, no chunking). Loaded lazily
            on first use. `save_pretrained` references a Hub name as it is, and saves a local codec inside the
            folder (`codec/`, written as `"./codec"`); in a saved `preprocessor_config.json`, a value starting with
            `"."` is relative to that folder (locally or in the same Hub repository), so the folder loads from any
            working directory, after being moved, and from the Hub.
        bandwidth (`float`, defaults to 3.0):
            EnCodec target bandwidth in kbps; 3.0 = 4 codebooks.
        max_duration (`float`, defaults to 10.0):
            Clips are truncated to this many seconds; `padding="max_length"` pads to it.
        sampling_rate (`int`, defaults to 24000):
            Rate the codec expects; input at other rates (`MIN_SAMPLING_RATE` to `MAX_SAMPLING_RATE`, 1 kHz to
            384 kHz) is resampled (`resample`, python-soxr).
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
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        revision: str | None = None,
        proxies: dict | None = None,
        subfolder: str = "",
        device: str | None = None,
        **kwargs: Any,
    ) -> "AudioFormerFeatureExtractor":
        """`FeatureExtractionMixin.from_pretrained`, plus `device=` for the codec; `from_dict` resolves a codec saved
        inside the folder. The Hub arguments are named (as in `AutoFeatureExtractor.from_pretrained`) for
        `_loading_source`, which reads them from this frame."""
        return super().from_pretrained(
            pretrained_model_name_or_path,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            revision=revision,
            proxies=proxies,
            subfolder=subfolder,
            device=device,
            **kwargs,
        )

    @classmethod
    def from_dict(cls, feature_extractor_dict: dict[str, Any], **kwargs: Any) -> "AudioFormerFeatureExtractor":
        """`FeatureExtractionMixin.from_dict`, plus `device=` for the codec. Under a `from_pretrained` (this class's or
        `AutoFeatureExtractor`'s, see `_loading_source`), a saved codec path relative to the folder (`"./codec"`)
        becomes a path on this machine: the folder's, or the Hub cache's (its files are fetched)."""
        device = kwargs.pop("device", None)
        # a codec_name_or_path passed by the caller is the caller's own path
        source = None if "codec_name_or_path" in kwargs else _loading_source()
        out = super().from_dict(feature_extractor_dict, **kwargs)
        fe = out[0] if isinstance(out, tuple) else out
        if source is not None:
            path, subfolder, hub_kwargs = source
            check_codec_reference(fe.codec_name_or_path, path)
            if fe.codec_name_or_path.startswith("."):
                relative_path = os.path.join(subfolder, fe.codec_name_or_path)
                fe.codec_name_or_path = resolve_relative_codec(path, relative_path, hub_kwargs)
        if device is not None:
            fe.to(device)
        return out

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> list:
        """`FeatureExtractionMixin.save_pretrained`. A local codec is saved inside the folder (see
        `codec_name_or_path`). With the Auto class registered (importing `tokenization` does) it also writes the
        remote code, this file and `configuration_audioformer.py` (see `save_remote_code`)."""
        os.makedirs(save_directory, exist_ok=True)
        codec_name_or_path = self.codec_name_or_path
        self.codec_name_or_path = self._save_local_codec(save_directory)  # the saved value; restored below
        restore_auto_class = self._auto_class is not None
        if restore_auto_class:
            self.auto_map = {self._auto_class: save_remote_code(self, save_directory)}
            self._auto_class = None  # an instance attribute over the class's: the code is written above
        try:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:
            self.codec_name_or_path = codec_name_or_path
            if restore_auto_class:
                del self._auto_class

    def _save_local_codec(self, save_directory: str | os.PathLike) -> str:
        """The `codec_name_or_path` to save: a Hub name as it is; for a local codec, its path relative to
        `save_directory`, after saving it there as `codec/` unless it is already inside."""
        if not os.path.isdir(self.codec_name_or_path):
            return self.codec_name_or_path
        codec_dir, folder = os.path.realpath(self.codec_name_or_path), os.path.realpath(save_directory)
        if codec_dir != folder and not codec_dir.startswith(folder + os.sep):
            source, codec_dir = codec_dir, os.path.join(folder, CODEC_FOLDER)
            if self._codec is not None or not _copy_codec_files(source, codec_dir):
                self.codec.save_pretrained(codec_dir)  # config.json + model.safetensors
        return "./" + os.path.relpath(codec_dir, folder).replace(os.sep, "/") if codec_dir != folder else "."

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
            # from_pretrained initialises weights before loading them, drawing from the global RNG: a lazy load
            # in the middle of a training run (the first checkpoint save) would shift every later dropout mask.
            with torch.random.fork_rng(devices=[]):
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
            audio: one mono clip `(T,)`, a batch of mono clips `(B, T)`, or a list of clips, each mono `(T,)` or
                channels-first `(C, T)` (down-mixed to mono); numpy or torch, float or int16/int32/uint8 PCM.
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
        sampling_rate = check_sampling_rate(sampling_rate)
        if padding is True:
            padding = "longest"
        if padding not in ("max_length", "longest"):
            raise ValueError(f"padding must be 'max_length' or 'longest', got {padding!r}.")

        waveforms = [self._prepare(clip, sampling_rate) for clip in split_clips(audio)]
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
            # cut first (long files), keeping the resampling filter's reach: 200 samples at the lower rate cover
            # soxr's VHQ filter to 1e-10
            reach = math.ceil(RESAMPLING_REACH * max(1.0, sampling_rate / self.sampling_rate)) + 1
            wav = wav[: math.ceil(self.max_duration * sampling_rate) + reach]
            wav = resample(wav.to(torch.float64), sampling_rate, self.sampling_rate).to(torch.float32)
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

    def pad(
        self,
        processed_features: BatchFeature | Mapping | list,
        padding: bool | str | PaddingStrategy = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | TensorType | None = None,
    ) -> BatchFeature:
        """
        Pads code ids along time with `<PAD>` and the attention mask with 0: what `DataCollatorWithPadding(fe)`
        (Trainer's default collator with `processing_class=fe`) calls on a list of examples.

        Args:
            processed_features: a list of examples (dicts) or a dict of lists; each example's `input_ids` is
                `(num_codebooks, T_i)` (or one row `(T_i,)`), its `attention_mask` `(T_i,)` if it has one (else real
                positions are those not holding `<PAD>`). Other keys (e.g. `labels`) are kept.
            padding: `True` / `"longest"`: to the longest example; `"max_length"`: to `max_length`; `False` /
                `"do_not_pad"`: the examples must have the same length.
            max_length: the length of `"max_length"` padding and of truncation.
            truncation: cut longer examples to `max_length` ids, ending in `<EOA>` as full clips do.
            pad_to_multiple_of: round the padded length up to a multiple of this.
            return_attention_mask: False to leave the mask out.
            return_tensors: `"pt"`, `"np"` or None (the type of the given ids; lists for lists).

        Returns:
            `BatchFeature` with `input_ids` `(B, num_codebooks, T)` (or `(B, T)`), int64, and `attention_mask`
            `(B, T)`.
        """
        if isinstance(processed_features, (list, tuple)) and processed_features:
            if not isinstance(processed_features[0], Mapping):
                raise ValueError("pad takes a list of examples (dicts with input_ids) or a dict of lists.")
            processed_features = {
                key: [example[key] for example in processed_features] for key in processed_features[0]
            }
        if not isinstance(processed_features, Mapping) or "input_ids" not in processed_features:
            raise ValueError("pad needs examples with input_ids (code ids from this feature extractor).")
        given = processed_features["input_ids"]
        first = given[0] if len(given) else None
        if return_tensors is None:
            return_tensors = (
                "pt" if isinstance(first, torch.Tensor) else "np" if isinstance(first, np.ndarray) else None
            )
        ids = [torch.as_tensor(np.asarray(x) if isinstance(x, list) else x).long() for x in given]
        if not ids:
            raise ValueError("Nothing to pad: input_ids is empty.")
        shapes = [tuple(x.shape) for x in ids]
        if {x.dim() for x in ids} - {1, 2} or len({shape[:-1] for shape in shapes}) > 1:
            raise ValueError(
                "Each example's input_ids must be (num_codebooks, T) or (T,), the same number of codebooks for "
                f"all; got shapes {shapes}."
            )
        masks = processed_features.get("attention_mask")
        if masks is None:  # real positions: BOA .. EOA; <PAD> only follows a clip
            masks = [(x if x.dim() == 1 else x[0]) != self.pad_token_id for x in ids]
        masks = [torch.as_tensor(np.asarray(m) if isinstance(m, list) else m).long() for m in masks]
        for x, m in zip(ids, masks):
            if m.shape != x.shape[-1:]:
                raise ValueError(
                    f"An attention_mask of shape {tuple(m.shape)} for input_ids of shape {tuple(x.shape)}."
                )

        if truncation:
            if max_length is None:
                raise ValueError("truncation=True needs max_length.")
            cut = [x.shape[-1] > max_length for x in ids]
            ids = [x[..., :max_length].clone() for x in ids]
            masks = [m[:max_length] for m in masks]
            for x, was_cut in zip(ids, cut):
                if was_cut:
                    x[..., -1] = self.eoa_token_id
        lengths = [x.shape[-1] for x in ids]
        padding = PaddingStrategy.LONGEST if padding is True else PaddingStrategy(padding or "do_not_pad")
        if padding == PaddingStrategy.MAX_LENGTH:
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length.")
            if max(lengths) > max_length:
                raise ValueError(f"An example has {max(lengths)} ids, more than max_length={max_length}: truncate it.")
            target = max_length
        elif padding == PaddingStrategy.DO_NOT_PAD and len(set(lengths)) > 1:
            raise ValueError(f"padding=False needs examples of one length, got lengths {sorted(set(lengths))}.")
        else:
            target = max(lengths)
        if pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of

        batch_ids = torch.full((len(ids), *ids[0].shape[:-1], target), self.pad_token_id, dtype=torch.long)
        batch_mask = torch.zeros(len(ids), target, dtype=torch.long)
        for i, (x, m) in enumerate(zip(ids, masks)):
            batch_ids[i, ..., : x.shape[-1]] = x
            batch_mask[i, : m.shape[-1]] = m
        data = {key: value for key, value in processed_features.items() if key not in ("input_ids", "attention_mask")}
        data["input_ids"] = batch_ids
        if return_attention_mask is not False:
            data["attention_mask"] = batch_mask
        if return_tensors is None:
            data = {key: v.tolist() if isinstance(v, torch.Tensor) else v for key, v in data.items()}
            return BatchFeature(data)
        if str(return_tensors) in ("np", TensorType.NUMPY):
            data = {key: v.numpy() if isinstance(v, torch.Tensor) else v for key, v in data.items()}
        return BatchFeature(data, tensor_type=return_tensors)

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


__all__ = [
    "AudioFormerFeatureExtractor",
    "MAX_SAMPLING_RATE",
    "MIN_SAMPLING_RATE",
    "check_sampling_rate",
    "resample",
    "split_clips",
]
