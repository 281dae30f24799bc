"""
Reading audio without torchcodec: `datasets`' `Audio` feature needs torchcodec to decode (and to encode file
paths while building an `audiofolder`), so audio stays undecoded (`Audio(decode=False)` or plain path strings)
and is decoded here with soundfile.

- `decode_audio(value)`: a path, bytes, or an `Audio(decode=False)` dict -> (float32 `(C, T)`, sampling rate).
- `load_audio_dataset(...)`: a Hub dataset, a local audiofolder directory, or CSV / JSON-lines files -> DatasetDict
  whose audio column is undecoded. A bad metadata value stops it with an error naming the file, the line (or row)
  and the column.
- `audio_identities(dataset, column)`: what identifies each audio value (file path, size and modification time; a
  hash of in-memory audio), so that codes made from it are never reused for other audio.
"""

import csv
import hashlib
import io
import json
import os
import struct

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
        expected = f.frames if frames < 0 else min(frames, f.frames)
        if f.format == "FLAC" and len(audio) < expected:  # FLAC's header holds the exact count (MP3's is a guess)
            raise ValueError(f"truncated audio: the header declares {f.frames} frames, {len(audio)} could be read")
        shortfall = _wav_shortfall(source)
        if shortfall is not None:
            raise ValueError(
                f"truncated audio: the WAV header declares {shortfall[0]} frames, the file holds {shortfall[1]}"
            )
        return audio.T, int(f.samplerate)


def _wav_shortfall(source) -> tuple[int, int] | None:
    """(declared, present) frames of a WAV file whose data chunk is cut short, else None. libsndfile counts the
    frames present and reads them without complaint, so a cut download would be tokenized as a shorter clip."""
    if isinstance(source, io.BytesIO):
        data, size = source.getbuffer()[:65536].tobytes(), source.getbuffer().nbytes
    else:
        with open(source, "rb") as f:
            data, size = f.read(65536), os.fstat(f.fileno()).st_size
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset, block_align = 12, None
    while offset + 8 <= len(data):
        chunk, length = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        if chunk == b"fmt " and offset + 22 <= len(data):
            block_align = struct.unpack("<H", data[offset + 20 : offset + 22])[0]
        if chunk == b"data":
            present = size - offset - 8
            # 0 and 0xFFFFFFFF mark a stream whose length was unknown when the header was written
            if not block_align or length in (0, 0xFFFFFFFF) or present >= length:
                return None
            return length // block_align, present // block_align
        offset += 8 + length + (length & 1)
    return None


def audio_name(value) -> str:
    """A readable name of an audio value for error reports."""
    if isinstance(value, dict):
        return str(value.get("path") or "<bytes>")
    if isinstance(value, (bytes, bytearray)):
        return "<bytes>"
    return str(value)


def audio_identities(dataset: datasets.Dataset, column: str) -> list[tuple[str, int, int, str]]:
    """
    What identifies each audio value of `dataset[column]`, as `(source, size, modified_ns, content)`:

    - a file (a path, or an `Audio(decode=False)` dict without bytes): (absolute path, size in bytes, modification
      time in ns, "") from one `os.stat`; a missing file gives size and time -1. Editing, replacing or re-downloading
      a file changes its time (a same-size file copied over it with its old time kept, e.g. `cp -p`, does not).
    - audio bytes in an on-disk (Arrow) dataset, e.g. a Hub dataset: (name, number of bytes, -1, "<dataset
      fingerprint>/<row>"): its files are immutable and `datasets` gives other data another fingerprint. The bytes
      are not read, so checking 2M clips costs at most 2M `stat` calls.
    - bytes or arrays held in memory: (name, size, -1, BLAKE2 hash of the content).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    values = dataset.select_columns([column]).with_format("arrow")[:].column(column)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return [_file_identity(path) for path in values.to_pylist()]
    fields = {field.name for field in values.type} if pa.types.is_struct(values.type) else set()
    if "array" not in fields and fields & {"path", "bytes"}:  # Audio(decode=False): {"path", "bytes"}
        paths = pc.struct_field(values, "path").to_pylist() if "path" in fields else [None] * len(values)
        sizes = pc.binary_length(pc.struct_field(values, "bytes")).to_pylist() if "bytes" in fields else None
        if sizes is None or all(size is None for size in sizes):
            return [_file_identity(path) for path in paths]
        in_memory = None if dataset.cache_files else pc.struct_field(values, "bytes").to_pylist()
        return [
            _file_identity(path)
            if size is None
            else (path or "<bytes>", size, -1, _hash(in_memory[i]) if in_memory else f"{dataset._fingerprint}/{i}")
            for i, (path, size) in enumerate(zip(paths, sizes))
        ]
    identities = []
    for value in values.to_pylist():  # raw bytes or {"array", "sampling_rate"} dicts, held in memory
        if isinstance(value, dict) and value.get("array") is not None:
            array = np.asarray(value["array"], dtype=np.float32)
            content = array.tobytes() + str(value.get("sampling_rate")).encode()
            identities.append(("<array>", array.size, -1, _hash(content)))
        elif isinstance(value, (bytes, bytearray)):
            identities.append(("<bytes>", len(value), -1, _hash(value)))
        else:
            identities.append((audio_name(value), -1, -1, _hash(repr(value).encode())))
    return identities


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _file_identity(path) -> tuple[str, int, int, str]:
    if path is None:
        return ("<none>", -1, -1, "")
    path = os.path.abspath(path)
    try:
        stat = os.stat(path)
    except OSError:
        return (path, -1, -1, "")
    return (path, stat.st_size, stat.st_mtime_ns, "")


def _read_metadata(path: str) -> list[tuple[int, dict]]:
    """The rows of a metadata.jsonl / metadata.csv as (line number, row); a ValueError names a bad line."""
    rows = []
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path}, line {line_number}: not valid JSON ({err.msg}, column {err.colno})."
                    ) from None
                if not isinstance(row, dict):
                    raise ValueError(
                        f"{path}, line {line_number}: expected a JSON object, got {type(row).__name__} {row!r:.60}."
                    )
                rows.append((line_number, row))
        return rows
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            if None in row:  # csv puts the fields beyond the header under the key None
                raise ValueError(
                    f"{path}, line {reader.line_num}: {len(reader.fieldnames) + len(row[None])} fields, but the "
                    f"header has {len(reader.fieldnames)} ({reader.fieldnames})."
                )
            rows.append((reader.line_num, row))
    return rows


def _kind(value) -> str | None:
    """The kind of a metadata value, which must be the same down a column (an Arrow column holds one type)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def _check_same_kind(path, line, column, value, seen: dict, what: str = "") -> None:
    kind = _kind(value)
    if kind is None:
        return
    first_line, first_kind, first_value = seen.setdefault(column, (line, kind, value))
    if kind != first_kind:
        raise ValueError(
            f"{path}, line {line}, column {column!r}: {what}{value!r:.80} is {kind}, but line {first_line} holds "
            f"{what}{first_kind} ({first_value!r:.40}); a column holds one kind of value."
        )


def _check_metadata(path: str, rows: list[tuple[int, dict]]) -> None:
    """Every row has a `file_name` string, and every column (and the items of a list column) holds one kind of
    value; else a ValueError naming the file, the line and the column, instead of a KeyError or an Arrow error."""
    values, items = {}, {}  # column -> (line, kind, value) of its first value / list item
    for line, row in rows:
        name = row.get("file_name")
        if not isinstance(name, str) or not name.strip():
            problem = "is missing" if "file_name" not in row else f"is {name!r}, not a file name"
            raise ValueError(f"{path}, line {line}: column 'file_name' {problem}.")
        for column, value in row.items():
            _check_same_kind(path, line, column, value, values)
            for item in value if isinstance(value, list) else ():
                _check_same_kind(path, line, column, item, items, what="the item ")


def _audiofolder_split(directory: str, audio_column_name: str) -> datasets.Dataset:
    """One split of an audiofolder: metadata.jsonl / metadata.csv with `file_name`, or class sub-folders."""
    for name in ("metadata.jsonl", "metadata.csv"):
        meta = os.path.join(directory, name)
        if os.path.isfile(meta):
            numbered = _read_metadata(meta)
            if numbered and not any("file_name" in row for _, row in numbered):
                raise ValueError(f"{meta} has no 'file_name' column.")
            _check_metadata(meta, numbered)
            rows = [row for _, row in numbered]
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


def _absolutize(dataset: datasets.Dataset, column: str, path: str) -> datasets.Dataset:
    """Relative paths in a CSV/JSON file `path` are taken relative to its directory (if not found from cwd); an
    empty or non-text cell is a ValueError naming the file, the row and the column."""
    base_dir = os.path.dirname(os.path.abspath(path))
    header = 1 if path.lower().endswith((".csv", ".tsv")) else 0

    def fix(batch, indices):
        for i, p in zip(indices, batch[column]):
            if not isinstance(p, str) or not p.strip():
                line = f" (line {i + 1 + header})" if header else ""
                raise ValueError(
                    f"{path}, row {i + 1}{line}, column {column!r}: {p!r} is not an audio file path; fill it or "
                    "drop the row."
                )
        batch[column] = [
            p if (os.path.isabs(p) or os.path.exists(p)) else os.path.join(base_dir, p) for p in batch[column]
        ]
        return batch

    return dataset.map(fix, batched=True, with_indices=True, desc="resolving audio paths")


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
            try:
                ds = datasets.load_dataset(builder, data_files={split: path}, cache_dir=cache_dir, **kwargs)[split]
            except Exception as err:  # pandas / Arrow parse errors do not say which file they are about
                raise ValueError(f"Could not read the {split} file {path}: {type(err).__name__}: {err}") from err
            if audio_column_name not in ds.column_names:
                raise ValueError(
                    f"Audio column '{audio_column_name}' not found in {path}; columns are {ds.column_names}. "
                    "Set audio_column_name."
                )
            dsd[split] = _absolutize(ds, audio_column_name, path)
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
