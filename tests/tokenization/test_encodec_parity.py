"""
Parity with Meta's reference `encodec` package: a seeded `encodec` 24 kHz model converted to transformers'
`EncodecModel` gives identical codes at 3 kbps on the same audio.

`encodec` imports torchaudio only in utils.py (resampling, saving); its model code runs without it. torchaudio
is not installable here, so a placeholder module is put in `sys.modules` (after transformers is imported, so
transformers does not take it for the real package). Skipped, with the reason, when `encodec` is not installed
(`pip install -e .[encodec]`).
"""

import sys
import types

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (import before the torchaudio placeholder)
from transformers import EncodecConfig, EncodecModel

from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.tokenization.convert_encodec import convert_encodec_state_dict
from audioformer.training.tiny_codec import seed_audio


def _import_encodec():
    placeholder = "torchaudio" not in sys.modules
    if placeholder:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        import encodec
    except ImportError as err:
        pytest.skip(f"Meta's `encodec` package is not importable ({err}); install the [encodec] extra.")
    finally:
        if placeholder:
            del sys.modules["torchaudio"]
    return encodec


@torch.no_grad()
def _seeded_meta_model(encodec, seed=0):
    """Meta encodec 24 kHz model, seeded weights, codebooks filled from encoder residuals of seeded audio."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False).eval()
    model.set_target_bandwidth(3.0)
    residual = model.encoder(seed_audio(4, 24000, seed=seed))  # (4, 128, 75): 300 frames
    residual = residual.permute(0, 2, 1).reshape(-1, residual.shape[1])
    gen = torch.Generator().manual_seed(seed)
    for layer in model.quantizer.vq.layers[:4]:
        book = layer._codebook
        pick = torch.randint(0, residual.shape[0], (book.embed.shape[0],), generator=gen)
        embed = residual[pick] + 0.05 * residual.std() * torch.randn(book.embed.shape, generator=gen)
        book.embed.copy_(embed)
        book.embed_avg.copy_(embed)
        book.inited.fill_(1)
        residual = residual - book.decode(book.encode(residual))
    for layer in model.quantizer.vq.layers[4:]:  # unused at 3 kbps, but keep them non-zero and initialised
        layer._codebook.embed.normal_(generator=gen)
        layer._codebook.inited.fill_(1)
    return model


@pytest.fixture(scope="module")
def models():
    encodec = _import_encodec()
    meta = _seeded_meta_model(encodec)
    hf = EncodecModel(EncodecConfig()).eval()  # default config = facebook/encodec_24khz
    hf.load_state_dict(convert_encodec_state_dict(meta.state_dict()), strict=True)
    return meta, hf


def _audio():
    clips = seed_audio(2, 24000, seed=42)  # 1 s each = 75 frames
    return clips * torch.tensor([1.0, 0.2])[:, None, None]


def test_converted_weights_give_identical_codes_float64(models):
    meta, hf = models
    meta, hf = meta.double(), hf.double()
    try:
        x = _audio().double()
        with torch.no_grad():
            ref = meta.encode(x)[0][0]  # (B, K, T)
            got = hf.encode(x, bandwidth=3.0).audio_codes[0]
    finally:
        meta.float(), hf.float()
    assert ref.shape == got.shape == (2, 4, 75)
    assert len(torch.unique(ref[:, 0])) > 20  # the codebooks are really used
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_float32_codes_match(models):
    meta, hf = models
    x = _audio()
    with torch.no_grad():
        ref = meta.encode(x)[0][0]
        got = hf.encode(x, bandwidth=3.0).audio_codes[0]
    mismatch = (ref != got).float().mean().item()
    assert mismatch < 0.01, f"float32 code mismatch rate {mismatch:.4f}"


def test_feature_extractor_ids_are_meta_codes_plus_3(models, tmp_path):
    meta, hf = models
    hf.save_pretrained(tmp_path)
    fe = AudioFormerFeatureExtractor(codec_name_or_path=str(tmp_path), max_duration=1.0)
    fe.codec.double()
    x = _audio()
    ids = fe([c[0].numpy() for c in x], sampling_rate=24000)["input_ids"]
    meta.double()
    try:
        with torch.no_grad():
            ref = meta.encode(x.double())[0][0]
    finally:
        meta.float()
    torch.testing.assert_close(ids[:, :, 1:-1], ref + 3, rtol=0, atol=0)
    assert (ids[:, :, 0] == 0).all() and (ids[:, :, -1] == 2).all()
    np.testing.assert_array_equal(ids.shape, (2, 4, 77))
