"""Tests of tokenization/audio_io.py: decoding with soundfile and loading audiofolders and CSV / JSON-lines files."""

import os
import re

import numpy as np
import pytest
import soundfile as sf

from audioformer.tokenization.audio_io import audio_identities, decode_audio, load_audio_dataset


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


# ------------------------------------------------------------------------------------- bad metadata, bad audio


@pytest.mark.parametrize(
    "lines,message",
    [
        (['{"file_name": "a.wav"}', '{"label": 1}'], r"line 2: column 'file_name' is missing"),
        (['{"file_name": "a.wav"}', '{"file_name": null}'], r"line 2: column 'file_name' is None, not a file name"),
        (['{"file_name": "a.wav"}', "", '{"file_name": "b.wav",'], r"line 3: not valid JSON"),
        (['["a.wav", 1]'], r"line 1: expected a JSON object, got list"),
        (
            ['{"file_name": "a.wav", "label": "dog"}', '{"file_name": "b.wav", "label": 1}'],
            r"line 2, column 'label': 1 is a number, but line 1 holds a string \('dog'\)",
        ),
        (
            ['{"file_name": "a.wav", "labels": ["a", "b"]}', '{"file_name": "b.wav", "labels": "c"}'],
            r"line 2, column 'labels': 'c' is a string, but line 1 holds a list",
        ),
        (
            ['{"file_name": "a.wav", "labels": ["a"]}', '{"file_name": "b.wav", "labels": ["b", 2]}'],
            r"line 2, column 'labels': the item 2 is a number, but line 1 holds the item a string",
        ),
    ],
)
def test_bad_metadata_jsonl_names_file_line_and_column(tmp_path, lines, message):
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "metadata.jsonl")) + ", " + message):
        load_audio_dataset(data_dir=str(tmp_path))


def test_bad_metadata_csv(tmp_path):
    (tmp_path / "metadata.csv").write_text("file_name,label\na.wav,1\n,2\n")
    with pytest.raises(ValueError, match=r"metadata.csv, line 3: column 'file_name' is '', not a file name"):
        load_audio_dataset(data_dir=str(tmp_path))
    (tmp_path / "metadata.csv").write_text("file_name,label\na.wav,1\nb.wav,2,3\n")
    with pytest.raises(ValueError, match=r"metadata.csv, line 3: 3 fields, but the header has 2"):
        load_audio_dataset(data_dir=str(tmp_path))
    (tmp_path / "metadata.csv").write_text("file_name,label\na.wav,1\nb.wav\n")  # a short row: a missing label
    assert load_audio_dataset(data_dir=str(tmp_path))["train"]["label"] == ["1", None]


def test_empty_audio_cell_in_a_data_file(tmp_path):
    (tmp_path / "train.csv").write_text("audio,label\na.wav,1\n,2\n")
    with pytest.raises(ValueError, match=r"train.csv, row 2 \(line 3\), column 'audio': None is not an audio file"):
        load_audio_dataset(train_file=str(tmp_path / "train.csv"))
    (tmp_path / "train.jsonl").write_text('{"audio": "a.wav"}\n{"audio": null}\n')
    with pytest.raises(ValueError, match=r"train.jsonl, row 2, column 'audio': None is not an audio file"):
        load_audio_dataset(train_file=str(tmp_path / "train.jsonl"))


def test_truncated_wav_is_an_error_naming_the_cut(tmp_path):
    sf.write(tmp_path / "full.wav", np.full(24000, 0.1, np.float32), 24000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 4978 * 2])  # header: 24000 frames; 4978 present
    audio, sr = decode_audio(str(tmp_path / "full.wav"))
    assert audio.shape == (1, 24000) and sr == 24000
    with pytest.raises(ValueError, match="truncated audio: the WAV header declares 24000 frames, the file holds 4978"):
        decode_audio(str(tmp_path / "cut.wav"))
    with pytest.raises(ValueError, match="truncated audio"):
        decode_audio({"bytes": (tmp_path / "cut.wav").read_bytes(), "path": "cut.wav"})
    decode_audio(str(tmp_path / "full.wav"), max_seconds=0.1)  # reading only the start of a whole file is fine


def test_audio_identities(tmp_path):
    import datasets

    sf.write(tmp_path / "a.wav", np.zeros(100, np.float32), 24000)
    stat = os.stat(tmp_path / "a.wav")
    files = datasets.Dataset.from_dict({"audio": [str(tmp_path / "a.wav"), str(tmp_path / "gone.wav")]})
    assert audio_identities(files, "audio") == [
        (str(tmp_path / "a.wav"), stat.st_size, stat.st_mtime_ns, ""),
        (str(tmp_path / "gone.wav"), -1, -1, ""),
    ]
    undecoded = files.cast_column("audio", datasets.Audio(decode=False))
    assert audio_identities(undecoded, "audio") == audio_identities(files, "audio")
    in_memory = datasets.Dataset.from_dict(
        {"audio": [{"path": "x.wav", "bytes": b"abc"}, {"path": "x.wav", "bytes": b"abd"}]}
    )
    first, second = audio_identities(in_memory, "audio")
    assert first[:3] == ("x.wav", 3, -1) and first[3] != second[3]  # same name and size, other content
    arrays = datasets.Dataset.from_dict({"audio": [{"array": [0.0, 0.5], "sampling_rate": 16000}]})
    assert audio_identities(arrays, "audio")[0][:2] == ("<array>", 2)
