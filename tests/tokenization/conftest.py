"""Fixtures of the tokenization tests: a small audiofolder of wav files at several rates, with bad files."""

import json

import numpy as np
import pytest
import soundfile as sf

from audioformer.training.tiny_codec import seed_audio


def _write_wav(path, seconds, sr, seed, channels=1, subtype="PCM_16"):
    audio = seed_audio(channels, int(seconds * sr), sr, seed=seed)[:, 0].numpy().T * 0.5
    sf.write(path, audio, sr, subtype=subtype)


@pytest.fixture(scope="module")
def audiofolder(tmp_path_factory):
    """train: 5 good clips (16 kHz, 24 kHz, stereo 44.1 kHz, ...) + 1 corrupt + 1 empty file; validation: 2 clips."""
    root = tmp_path_factory.mktemp("audiofolder")
    specs = {
        "train": [(0.5, 16000, 1), (1.0, 24000, 1), (0.3, 44100, 2), (1.5, 24000, 1), (0.7, 8000, 1)],
        "validation": [(0.4, 24000, 1), (0.9, 16000, 1)],
    }
    for split, clips in specs.items():
        (root / split).mkdir()
        rows = []
        for i, (seconds, sr, ch) in enumerate(clips):
            _write_wav(root / split / f"clip{i}.wav", seconds, sr, seed=10 * i + len(split), channels=ch)
            rows.append({"file_name": f"clip{i}.wav", "label": i % 2, "caption": f"{split} {i}"})
        if split == "train":
            (root / split / "broken.wav").write_bytes(b"RIFF not really a wav file")
            sf.write(root / split / "empty.wav", np.zeros((0,), np.float32), 24000)
            rows.insert(2, {"file_name": "broken.wav", "label": 0, "caption": "broken"})
            rows.append({"file_name": "empty.wav", "label": 1, "caption": "empty"})
        with open(root / split / "metadata.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(root)
