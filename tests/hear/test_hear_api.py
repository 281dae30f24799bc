"""The HEAR 2021 API (`audioformer_hear`): the official validator, and the embeddings against the model run by hand."""

import sys
import types

import numpy as np
import pytest
import torch

import audioformer_hear
from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForMaskedLM, AudioFormerModel
from audioformer.modeling_audioformer.modeling_audioformer import masked_mean
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.tokenization.feature_extraction_audioformer import resample


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_codec_dir):
    """Two tiny MLM checkpoints (codebook rows 0 and 1) beside the tiny codec's feature extractor (max 2 s)."""
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    root = tmp_path_factory.mktemp("hear")
    paths = []
    for k in range(2):
        config = AudioFormerConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=256,
            codebook_index=k,
        )
        torch.manual_seed(k)
        path = root / f"c{k + 1}"
        AudioFormerForMaskedLM(config).save_pretrained(path)
        fe.save_pretrained(path)
        paths.append(str(path))
    return paths


def noise(n_sounds: int, seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n_sounds, int(seconds * sample_rate), generator=gen) * 2 - 1


def test_passes_the_hear_validator(checkpoints, monkeypatch):
    # hearvalidator imports tensorflow at the top but only meets tf.Module in an isinstance check for a torch model.
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        placeholder = types.ModuleType("tensorflow")
        placeholder.Module = type("Module", (), {})
        monkeypatch.setitem(sys.modules, "tensorflow", placeholder)
    validate = pytest.importorskip(
        "hearvalidator.validate", reason="install it with: pip install --no-deps hearvalidator==2021.0.2"
    )
    validate.ValidateModel("audioformer_hear", checkpoints[0], device="cpu")()  # raises ModelError on a failure


def test_scene_embedding_is_the_pooled_feature_fine_tuning_reads(checkpoints):
    model = audioformer_hear.load_model(checkpoints[0], sample_rate=16000)
    audio = noise(3, 1.5, 16000) * 0.3
    scene = audioformer_hear.get_scene_embeddings(audio, model)
    assert scene.shape == (3, model.scene_embedding_size) and scene.dtype == torch.float32

    fe = AudioFormerFeatureExtractor.from_pretrained(checkpoints[0])
    encoder = AudioFormerModel.from_pretrained(checkpoints[0]).eval()
    features = fe(list(audio.numpy()), sampling_rate=16000, padding="longest")
    with torch.no_grad():
        hidden = encoder(**features).last_hidden_state
    expected = masked_mean(hidden, features["attention_mask"])
    torch.testing.assert_close(scene, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0])
def test_timestamps_are_frame_centres_across_windows(checkpoints, seconds):
    model = audioformer_hear.load_model(checkpoints[0])  # 48 kHz; windows of 2 s (the extractor's max_duration)
    audio = noise(2, seconds, 48000, seed=1) * 0.3
    embeddings, timestamps = audioformer_hear.get_timestamp_embeddings(audio, model)
    hop = 1000 * 320 / 24000
    n = timestamps.shape[1]
    assert embeddings.shape == (2, n, model.timestamp_embedding_size) and embeddings.dtype == torch.float32
    np.testing.assert_allclose(timestamps[0].numpy(), (np.arange(n) + 0.5) * hop, rtol=1e-6)
    assert torch.equal(timestamps[0], timestamps[1])
    duration = 1000 * audio.shape[1] / 48000
    assert duration - hop <= timestamps[0, -1] <= duration  # every frame centred inside the audio is there

    # Frames of the second window are the model's hidden states on that window encoded as a clip.
    if seconds > 2.0:
        wave = resample(audio.double(), 48000, 24000).float()
        fe = model.feature_extractor
        features = fe(list(wave[:, 48000:96000].numpy()), sampling_rate=24000, padding="longest")
        with torch.no_grad():
            hidden = model.encoders[0](**features).last_hidden_state  # (2, 152, D): <BOA>, 150 frames, <EOA>
        torch.testing.assert_close(embeddings[:, 150:300], hidden[:, 1:-1], atol=1e-5, rtol=1e-4)


def test_codebook_models_are_concatenated(checkpoints):
    both = audioformer_hear.load_model(checkpoints[0], codebook_models=[checkpoints[1]])
    assert both.scene_embedding_size == both.timestamp_embedding_size == 32
    audio = noise(2, 2.5, 48000, seed=2) * 0.3
    scene = audioformer_hear.get_scene_embeddings(audio, both)
    frames, _ = audioformer_hear.get_timestamp_embeddings(audio, both)
    for k, path in enumerate(checkpoints):
        single = audioformer_hear.load_model(path)
        assert single.encoders[0].config.codebook_index == k
        torch.testing.assert_close(
            scene[:, 16 * k : 16 * (k + 1)], audioformer_hear.get_scene_embeddings(audio, single)
        )
        torch.testing.assert_close(
            frames[..., 16 * k : 16 * (k + 1)], audioformer_hear.get_timestamp_embeddings(audio, single)[0]
        )


def test_bad_input_is_named(checkpoints, tmp_path):
    with pytest.raises(ValueError, match="16000, 22050, 44100, 48000"):
        audioformer_hear.load_model(checkpoints[0], sample_rate=24000)
    with pytest.raises(ValueError, match="its own row"):
        audioformer_hear.load_model(checkpoints[0], codebook_models=[checkpoints[0]])
    with pytest.raises(ValueError, match="checkpoint folder"):
        audioformer_hear.load_model("")
    with pytest.raises(ValueError, match="no config.json"):
        audioformer_hear.load_model(str(tmp_path))
    model = audioformer_hear.load_model(checkpoints[0])
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        audioformer_hear.get_scene_embeddings(torch.zeros(48000), model)
    with pytest.raises(ValueError, match="NaN"):
        audioformer_hear.get_scene_embeddings(torch.full((1, 4800), float("nan")), model)
