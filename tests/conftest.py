"""Shared test fixtures. Everything is built locally: no test downloads anything."""

import os
import sys

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The test models are tiny; with 2 cores shared by parallel jobs, multi-threaded kernels spin and run 10x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_codec_dir(tmp_path_factory):
    """A folder holding a tiny seeded EncodecModel (seed 0) and a matching AudioFormerFeatureExtractor
    (max_duration 2 s) saved with save_pretrained."""
    from training.tiny_codec import build_tiny_feature_extractor

    path = tmp_path_factory.mktemp("tiny_codec")
    build_tiny_feature_extractor(path, seed=0, max_duration=2.0)
    return str(path)


@pytest.fixture(scope="session")
def tiny_feature_extractor(tiny_codec_dir):
    """AudioFormerFeatureExtractor over the tiny codec, codec loaded (max_duration 2 s = 150 frames)."""
    from tokenization import AudioFormerFeatureExtractor

    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    _ = fe.codec
    return fe
