"""Tests of tokenization/audio_io.py: decoding with soundfile and loading audiofolders and CSV / JSON-lines files."""

import os

import pytest

from tokenization.audio_io import decode_audio, load_audio_dataset


def test_load_audiofolder(audiofolder):
    dsd = load_audio_dataset(data_dir=audiofolder)
    assert set(dsd) == {"train", "validation"}
    assert len(dsd["train"]) == 7 and set(dsd["train"].column_names) == {"audio", "label", "caption"}
    audio, sr = decode_audio(dsd["train"][2 + 1]["audio"])  # the stereo 44.1 kHz clip after broken.wav
    assert sr == 44100 and audio.shape == (2, int(0.3 * 44100))


def test_load_csv_with_relative_paths(audiofolder, tmp_path):
    csv_path = os.path.join(audiofolder, "train", "list.csv")
    with open(csv_path, "w") as f:
        f.write("path,label\nclip0.wav,a\nclip1.wav,b\n")
    dsd = load_audio_dataset(train_file=csv_path, audio_column_name="path")
    assert list(dsd) == ["train"] and os.path.isfile(dsd["train"][1]["path"])
    with pytest.raises(ValueError, match="Audio column 'audio' not found"):
        load_audio_dataset(train_file=csv_path)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="No data source"):
        load_audio_dataset()
    with pytest.raises(ValueError, match="does not exist"):
        load_audio_dataset(train_file=str(tmp_path / "missing.csv"))
