"""
Reading audio without torchcodec: `datasets`' `Audio` feature needs torchcodec to decode (and to encode file
paths while building an `audiofolder`), so audio stays undecoded (`Audio(decode=False)` or plain path strings)
and is decoded here with soundfile.

- `decode_audio(value)`: a path, bytes, or an `Audio(decode=False)` dict -> (float32 `(C, T)`, sampling rate).
- `load_audio_dataset(...)`: a Hub dataset, a local audiofolder directory, or CSV / JSON-lines files -> DatasetDict
  whose audio column is undecoded.
"""

import csv
import io
import json
import os

import datasets
import numpy as np


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")
SPLIT_NAMES = ("train", "validation", "valid", "dev", "test", "eval")


def decode_audio(value, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """
    Decodes one audio value with soundfile.

    Args:
        value: a file path (str), raw file bytes, or a dict with "bytes" and/or "path" (as `Audio(decode=False)`
            stores it), or a dict with "array" and "sampling_rate" (already decoded).
        max_seconds: read at most this many seconds (saves work on long files).
    Returns:
        (audio float32 `(C, T)`, sampling_rate).
    """
    import soundfile as sf

    if isinstance(value, dict) and value.get("array") is not None:
        array = np.asarray(value["array"], dtype=np.float32)
        return (array[None] if array.ndim == 1 else array), int(value["sampling_rate"])
    if isinstance(value, dict):
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        source = io.BytesIO(value)
    else:
        source = value
    if source is None:
        raise ValueError("audio value has neither bytes nor a path")
    with sf.SoundFile(source) as f:
        frames = -1 if max_seconds is None else int(np.ceil(max_seconds * f.samplerate))
        audio = f.read(frames=frames, dtype="float32", always_2d=True)
        return audio.T, int(f.samplerate)


def audio_name(value) -> str:
    """A readable name of an audio value for error reports."""
    if isinstance(value, dict):
        return str(value.get("path") or "<bytes>")
    if isinstance(value, (bytes, bytearray)):
        return "<bytes>"
    return str(value)


def _read_metadata(path: str) -> list[dict]:
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _audiofolder_split(directory: str, audio_column_name: str) -> datasets.Dataset:
    """One split of an audiofolder: metadata.jsonl / metadata.csv with `file_name`, or class sub-folders."""
    for name in ("metadata.jsonl", "metadata.csv"):
        meta = os.path.join(directory, name)
        if os.path.isfile(meta):
            rows = _read_metadata(meta)
            if rows and "file_name" not in rows[0]:
                raise ValueError(f"{meta} has no 'file_name' column.")
            for row in rows:
                row[audio_column_name] = os.path.join(directory, row.pop("file_name"))
            return datasets.Dataset.from_list(rows)
    paths = sorted(
        os.path.join(root, f)
        for root, _, files in os.walk(directory)
        for f in files
        if f.lower().endswith(AUDIO_EXTENSIONS)
    )
    if not paths:
        raise ValueError(f"No audio files found in {directory}.")
    rows = {audio_column_name: paths}
    labels = [os.path.basename(os.path.dirname(p)) for p in paths]
    if any(os.path.dirname(p) != directory for p in paths):
        rows["label"] = labels
    return datasets.Dataset.from_dict(rows)


def _load_audiofolder(data_dir: str, audio_column_name: str) -> datasets.DatasetDict:
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir {data_dir} is not a directory.")
    splits = [s for s in sorted(os.listdir(data_dir)) if s in SPLIT_NAMES and os.path.isdir(os.path.join(data_dir, s))]
    if not splits:
        return datasets.DatasetDict({"train": _audiofolder_split(data_dir, audio_column_name)})
    return datasets.DatasetDict({s: _audiofolder_split(os.path.join(data_dir, s), audio_column_name) for s in splits})


def _absolutize(dataset: datasets.Dataset, column: str, base_dir: str) -> datasets.Dataset:
    """Relative paths in a CSV/JSON file are taken relative to that file's directory (if not found from cwd)."""

    def fix(batch):
        batch[column] = [
            p if (os.path.isabs(p) or os.path.exists(p)) else os.path.join(base_dir, p) for p in batch[column]
        ]
        return batch

    return dataset.map(fix, batched=True, desc="resolving audio paths")


def load_audio_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    data_dir: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    audio_column_name: str = "audio",
    cache_dir: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = False,
) -> datasets.DatasetDict:
    """
    Loads an audio dataset with its audio column left undecoded.

    Sources, in order: `dataset_name` (a Hub dataset or a builder such as "audiofolder" with `data_dir`),
    `data_dir` alone (an audiofolder: split sub-folders, each with metadata.jsonl/metadata.csv holding
    `file_name`, or class sub-folders), or `train_file` / `validation_file` (CSV or JSON lines with a column of
    audio paths, relative to the file's folder or absolute).

    Returns:
        DatasetDict; `audio_column_name` holds `Audio(decode=False)` dicts or path strings (see `decode_audio`).
    """
    if dataset_name in (None, "audiofolder") and data_dir is not None:
        dsd = _load_audiofolder(data_dir, audio_column_name)
    elif dataset_name is not None:
        kwargs = dict(cache_dir=cache_dir, token=token)
        if data_dir is not None:
            kwargs["data_dir"] = data_dir
        if trust_remote_code:
            kwargs["trust_remote_code"] = True
        dsd = datasets.load_dataset(dataset_name, dataset_config_name, **kwargs)
        if isinstance(dsd, datasets.Dataset):
            dsd = datasets.DatasetDict({"train": dsd})
    elif train_file is not None or validation_file is not None:
        files = {k: v for k, v in (("train", train_file), ("validation", validation_file)) if v is not None}
        dsd = datasets.DatasetDict()
        for split, path in files.items():
            if not os.path.isfile(path):
                raise ValueError(f"{split} file {path} does not exist.")
            ext = os.path.splitext(path)[1].lower().lstrip(".")
            builder = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json"}.get(ext)
            if builder is None:
                raise ValueError(f"{path}: data files must be .csv, .tsv, .json or .jsonl, got .{ext}.")
            kwargs = {"delimiter": "\t"} if ext == "tsv" else {}
            ds = datasets.load_dataset(builder, data_files={split: path}, cache_dir=cache_dir, **kwargs)[split]
            if audio_column_name not in ds.column_names:
                raise ValueError(
                    f"Audio column '{audio_column_name}' not found in {path}; columns are {ds.column_names}. "
                    "Set audio_column_name."
                )
            dsd[split] = _absolutize(ds, audio_column_name, os.path.dirname(os.path.abspath(path)))
    else:
        raise ValueError("No data source: pass dataset_name, data_dir, or train_file / validation_file.")

    for split, ds in dsd.items():
        if audio_column_name not in ds.column_names:
            raise ValueError(
                f"Audio column '{audio_column_name}' not found in split '{split}'; columns are {ds.column_names}. "
                "Set audio_column_name."
            )
        if isinstance(ds.features[audio_column_name], datasets.Audio):
            dsd[split] = ds.cast_column(audio_column_name, datasets.Audio(decode=False))
    return dsd
