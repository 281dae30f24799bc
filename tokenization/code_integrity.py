"""
Codes that are whole and in range, or an error that names the folder, the file and what to do.

- `write_checksums(folder)`: `checksums.json` beside a saved dataset (a finished shard, a merged split): each file's
  size and XXH3-64 checksum. `verify_checksums(folder)` checks them when a shard is reused or a split is loaded
  (measured cost: docs/fault-tolerance.md, benchmarks/bench_fault_checks.py).
- `check_code_ids(dataset, folder)`: every id of `input_ids` is in [0, code_offset + codebook_size) (BOA, EOA and the
  codes; no padding or mask ids are written), checked per codebook with NumPy min/max over the Arrow buffers, no
  per-row Python; the error names the first bad row, its codebook and its value.
- `check_saved_dataset(path)`: before `datasets.load_from_disk`: an unfinished pre-tokenization ("N of M shards
  done"), a truncated JSON file, a missing arrow file, each named.
"""

import json
import os
import re

import numpy as np
import pyarrow as pa
import xxhash

from audioformer.modeling_audioformer.configuration_audioformer import CODE_OFFSET, CODEBOOK_SIZE


CHECKSUMS_FILE = "checksums.json"
ID_LIMIT = CODE_OFFSET + CODEBOOK_SIZE  # 1027: BOA 0, PAD 1, EOA 2, codes 3..1026; <MASK> is never written
_SHARD = re.compile(r"^shard-(\d+)-of-(\d+)$")


class CorruptCodesError(ValueError):
    """A tokenized dataset (or one of its shards) whose files or ids are damaged; the message names the file."""


def file_digest(path: str, chunk_bytes: int = 16 << 20) -> str:
    """XXH3-64 of a file's bytes (hex), read in 16 MiB chunks: a fast non-cryptographic checksum (xxhash comes with
    `datasets`), several times faster than zlib's CRC-32 here, to catch torn, zeroed or flipped bytes, not
    tampering."""
    digest = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: str) -> dict:
    """Writes `folder/checksums.json`: the size and checksum (`file_digest`) of every file directly in `folder` (the
    arrow files, state.json, dataset_info.json, ...), fsynced. Returns them."""
    files = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name != CHECKSUMS_FILE and os.path.isfile(path):
            files[name] = {"size": os.path.getsize(path), "xxh3_64": file_digest(path)}
    tmp = os.path.join(folder, f".{CHECKSUMS_FILE}.tmp")
    with open(tmp, "w") as f:
        json.dump({"format": 1, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, CHECKSUMS_FILE))
    return files


def listed_files_problem(folder: str, listing: str, full_paths: bool = True) -> str | None:
    """
    The first file listed in `folder/listing` (`{"files": {name: {"size": ..., "xxh3_64": ...}}}`, as
    `write_checksums` and the checkpoints' manifest write it) that is missing, torn or corrupt, in words; None if all
    match, or if there is no listing (written before there were). Files are named by their path, or by their name
    within `folder` (`full_paths=False`).
    """
    path = os.path.join(folder, listing)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{path if full_paths else listing} is unreadable ({err})"
    for name, expected in files.items():
        file = os.path.join(folder, name)
        shown = file if full_paths else name
        if not os.path.isfile(file):
            return f"{shown} is missing"
        size = os.path.getsize(file)
        if size != expected["size"]:
            return f"{shown} is torn ({size} bytes, {expected['size']} written)"
        if file_digest(file) != expected["xxh3_64"]:
            return f"{shown} is corrupt (its checksum differs from the one written with it)"
    return None


def checksum_problem(folder: str) -> str | None:
    """The first file of `folder` that does not match its `checksums.json` (in words), or None if all do (or if
    the folder has no checksums: written before they were)."""
    return listed_files_problem(folder, CHECKSUMS_FILE)


def verify_checksums(folder: str, what: str = "the tokenized dataset") -> None:
    problem = checksum_problem(folder)
    if problem is not None:
        raise CorruptCodesError(
            f"{what} {folder} is damaged: {problem}. Tokenize it again: rerun the pre-tokenizer on a new folder, or "
            "with --overwrite_cache."
        )


def _flat_ids(column: pa.ChunkedArray):
    """For each chunk of a `list<list<int>>` column: (ids, index of each codebook list's first id, number of
    codebooks per row), all NumPy views of the Arrow buffers."""
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        outer_offsets = chunk.offsets.to_numpy()
        inner = chunk.values.slice(outer_offsets[0], outer_offsets[-1] - outer_offsets[0])
        inner_offsets = inner.offsets.to_numpy()
        ids = inner.values.slice(inner_offsets[0], inner_offsets[-1] - inner_offsets[0]).to_numpy(zero_copy_only=False)
        yield ids, inner_offsets - inner_offsets[0], outer_offsets - outer_offsets[0]


def check_code_ids(dataset, folder: str, id_limit: int = ID_LIMIT) -> None:
    """
    Raises `CorruptCodesError` unless every id of `dataset["input_ids"]` (rows `(num_codebooks, length)`) lies in
    [0, id_limit), naming `folder`, its arrow file, the first bad row (0-based, in the whole split), its codebook and
    the value. Vectorised: one min and one max over each Arrow chunk; only a chunk that fails is searched.
    """
    table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
    if "input_ids" not in table.column_names:
        return
    files = [f["filename"] for f in dataset.cache_files] if dataset.cache_files else []
    row_base = 0
    for ids, inner_offsets, outer_offsets in _flat_ids(table.column("input_ids")):
        rows = len(outer_offsets) - 1
        if ids.size and (ids.min() < 0 or ids.max() >= id_limit):
            first = int(np.flatnonzero((ids < 0) | (ids >= id_limit))[0])
            codebook_list = int(np.searchsorted(inner_offsets, first, side="right") - 1)
            row = int(np.searchsorted(outer_offsets, codebook_list, side="right") - 1)
            codebook = codebook_list - int(outer_offsets[row])
            where = f" ({', '.join(os.path.basename(f) for f in files)})" if files else ""
            raise CorruptCodesError(
                f"{folder}{where}: row {row_base + row} holds id {int(ids[first])} in codebook {codebook} (ids must "
                f"be in 0..{id_limit - 1}): the codes are corrupt. Tokenize them again (a new folder, or "
                "--overwrite_cache)."
            )
        row_base += rows


def _json_problem(path: str) -> str | None:
    try:
        with open(path) as f:
            json.load(f)
    except ValueError as err:
        return f"{path} is damaged (not valid JSON: {err}; a truncated write?)"
    except OSError as err:
        return f"{path} cannot be read ({err})"
    return None


def unfinished_shards(path: str) -> tuple[int, int] | None:
    """(shards done, shards in all) of an unfinished pre-tokenization in `path` (its `_work/` folder), or None."""
    work = os.path.join(path, "_work")
    if not os.path.isdir(work):
        return None
    done = total = 0
    for split in sorted(os.listdir(work)):
        names = os.listdir(os.path.join(work, split)) if os.path.isdir(os.path.join(work, split)) else []
        counts = [int(m.group(2)) for n in names if (m := _SHARD.match(n.removeprefix(".tmp-")))]
        done += sum(1 for n in names if _SHARD.match(n))
        total += counts[0] if counts else 0
    return done, total


def check_saved_dataset(path: str, flag: str = "--tokenized_dataset", verify: bool = True) -> None:
    """
    Raises `CorruptCodesError` naming the problem if `path` is not a whole saved dataset: an unfinished
    pre-tokenization, a truncated `dataset_dict.json`, `state.json`, `dataset_info.json` or
    `tokenization_info.json`, a missing data file, or (if `verify`) files that do not match their checksums.
    """
    path = os.fspath(path)
    progress = unfinished_shards(path)
    is_dict = os.path.isfile(os.path.join(path, "dataset_dict.json"))
    if progress is None and os.path.isfile(os.path.join(path, "tokenization_info.json")):
        progress = (0, 0)  # started, no shard written yet
    if progress is not None and not (is_dict or os.path.isfile(os.path.join(path, "state.json"))):
        done, total = progress
        raise CorruptCodesError(
            f"{flag} {path} is an unfinished pre-tokenization ({done} of {total or '?'} shards done); rerun the same "
            "pre-tokenizer command to finish it."
        )
    for name in ("dataset_dict.json", "tokenization_info.json"):
        file = os.path.join(path, name)
        if os.path.isfile(file) and (problem := _json_problem(file)):
            raise CorruptCodesError(f"{flag} {path}: {problem}. {_AGAIN}")
    splits = [path]
    if is_dict:
        with open(os.path.join(path, "dataset_dict.json")) as f:
            listed = json.load(f).get("splits", [])
        splits = [os.path.join(path, s) for s in listed]
    for folder in splits:
        for name in ("state.json", "dataset_info.json"):
            file = os.path.join(folder, name)
            if not os.path.isfile(file):
                if name == "state.json":
                    raise CorruptCodesError(f"{flag} {path}: {file} is missing. {_AGAIN}")
                continue
            if problem := _json_problem(file):
                raise CorruptCodesError(f"{flag} {path}: {problem}. {_AGAIN}")
        with open(os.path.join(folder, "state.json")) as f:
            data_files = [d.get("filename") for d in json.load(f).get("_data_files", [])]
        for name in data_files:
            if not os.path.isfile(os.path.join(folder, name)):
                raise CorruptCodesError(f"{flag} {path}: {os.path.join(folder, name)} is missing. {_AGAIN}")
        if verify:
            verify_checksums(folder, what=flag)


_AGAIN = "Tokenize the audio again (a new folder, or the same command with --overwrite_cache)."


def arrow_problem(folder: str) -> str | None:
    """The first arrow file of a saved dataset folder that pyarrow cannot read (in words), or None."""
    for name in sorted(os.listdir(folder)):
        if name.endswith(".arrow"):
            try:
                with pa.memory_map(os.path.join(folder, name)) as source:
                    pa.ipc.open_stream(source).read_all()
            except (OSError, pa.ArrowException) as err:
                return f"{os.path.join(folder, name)} is damaged ({err})"
    return None


__all__ = [
    "CHECKSUMS_FILE",
    "CorruptCodesError",
    "arrow_problem",
    "check_code_ids",
    "check_saved_dataset",
    "checksum_problem",
    "file_digest",
    "unfinished_shards",
    "verify_checksums",
    "write_checksums",
]
