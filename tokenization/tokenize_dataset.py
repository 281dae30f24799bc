"""
Pre-tokenize an audio dataset once: audio -> EnCodec code ids, saved as a `datasets` dataset on disk.

    python -m audioformer.tokenization.tokenize_dataset --feature_extractor_name <fe> --data_dir <audiofolder> \
        --output_dir <out> \
        [--dataset_name ...] [--train_file a.csv --validation_file b.csv] [--preprocessing_batch_size 8]
    accelerate launch --num_processes 4 -m audioformer.tokenization.tokenize_dataset ...  # own shards each
    accelerate launch --multi_gpu --num_processes 2 -m audioformer.tokenization.tokenize_dataset ...  # CPU (gloo)

Output (what the training scripts read, `load_tokenized_dataset(output_dir)` or `datasets.load_from_disk`):

    output_dir/
      dataset_dict.json            # when the input was a DatasetDict: {"splits": [...]}
      <split>/                     # Dataset.save_to_disk: data-*.arrow, state.json, dataset_info.json
                                   # (a single Dataset input is saved in output_dir itself)
      tokenization_info.json       # codec settings and weights hash, audio column; per split its rows and the hash
                                   # of its input files' identities; a reuse must match them
      _inputs/<split>.parquet      # the identity of every input file, in row order: source, size, modified_ns,
                                   # content (see `audio_io.audio_identities`)
      failures.json                # {split: [{"audio": name, "error": reason}, ...]} unreadable / empty / cut files
      .audioformer.lock            # while a run writes here (`folder_lock.py`)
      _work/<split>/shard-00003-of-00016/   # finished shards ("data" for a single Dataset); deleted once merged
      .done-<split>                # the split is merged (skipped on resume)

Each row keeps every input column except the audio column, plus
    input_ids    int16 list of lists `(num_codebooks, frames + 2)` = [BOA, c+3, ..., EOA] per codebook, unpadded
    length       int32 `frames + 2` (the attention mask is all ones over that length)
    source_file  the audio it was made from (absolute path of a file; the name of in-memory audio), so that rows
                 can be traced to their files when some were skipped.

Never stale or mixed codes: an output folder is reused only for the same codec (settings and weights) and the same
input files (paths, sizes, modification times, in the same order). Another codec is an error. Other input files
are an error naming what differs (`if_inputs_changed="raise"`, the CLI and --tokenized_cache_dir), or, for the
training scripts' default cache, the split is tokenized again (`"retokenize"`). An unfinished shard made from other
files (a run killed and restarted on other data) is always redone. A folder that holds anything but a pre-tokenizer
output is never written to nor deleted. One run at a time: a second one on the same folder stops at once naming the
first (pid, host); a lock left by a killed run is taken over.

Shards are contiguous row ranges; rank r of W processes takes shards r, r+W, ...; rank 0 concatenates them in
order. A shard is finished once its folder exists (it is written under a temporary name and renamed), so an
interrupted run restarted with the same arguments redoes only unfinished shards. The default number of shards is
max(number of processes, rows / 1024): resume with the same number of processes, or fix `--num_shards`.
If any process fails (e.g. no clip of a split is readable), every process raises the same error.

The codec and audio flags are those of the training scripts (`tokenization/audio_arguments.py`):
`--feature_extractor_name` or `--codec_name_or_path` / `--bandwidth` / `--max_duration`, `--preprocessing_batch_size`,
and `--overwrite_cache` (start over instead of resuming).

Clips are encoded `batch_size` at a time with `padding="longest"`; the codec is causal, so a clip's codes do not
depend on its batch (exactly so in float64; in float32 a near-tie can flip a code, ~1e-4 of codes measured).
"""

import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from transformers import HfArgumentParser

from .audio_arguments import AudioDataArguments, CodecArguments, load_audio_splits, load_feature_extractor
from .audio_io import audio_identities, decode_audio
from .code_integrity import (
    CorruptCodesError,
    arrow_problem,
    check_code_ids,
    check_saved_dataset,
    checksum_problem,
    write_checksums,
)
from .folder_lock import LOCK_FILE, FolderNotWritableError, disk_full_error, is_disk_full
from .processes import claim_output_folder, process_state, shutdown, wait_for_everyone_or_raise


logger = logging.getLogger(__name__)

ROWS_PER_SHARD = 1024
SOURCE_COLUMN = "source_file"
WRITTEN_COLUMNS = ("input_ids", "length", SOURCE_COLUMN)
IF_INPUTS_CHANGED = ("raise", "retokenize")
INFO_FILE = "tokenization_info.json"
INPUTS_DIR = "_inputs"


def inputs_digest(identities) -> str:
    """SHA-256 of the input identities (`audio_io.audio_identities`), in row order."""
    text = "\n".join("\t".join(str(part) for part in identity) for identity in identities)
    return hashlib.sha256(text.encode()).hexdigest()


def codec_digest(feature_extractor) -> str:
    """SHA-256 of the codec's weights (names, dtypes, shapes, values): the same name can hold other weights (a local
    folder rebuilt, a Hub model updated). 0.2 s for the full-size EnCodec on CPU."""
    digest = hashlib.sha256()
    for name, tensor in sorted(feature_extractor.codec.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _tokenize_shard(shard, feature_extractor, audio_column_name, batch_size, keep_columns, progress, sources=None):
    """Encodes one shard; returns (tokenized Dataset, failures list). `sources`: the name of each row's audio."""
    input_ids, lengths, good, failures = [], [], [], []
    audio_values = shard[audio_column_name]
    sources = sources or [identity[0] for identity in audio_identities(shard, audio_column_name)]
    for start in range(0, len(shard), batch_size):
        clips, rows = [], []
        for i in range(start, min(start + batch_size, len(shard))):
            value = audio_values[i]
            try:
                audio, sr = decode_audio(value, max_seconds=feature_extractor.max_duration + 0.01)
                clips.append(feature_extractor._prepare(audio, sr))  # raises on empty audio, like bad files
                rows.append(i)
            except Exception as err:  # noqa: BLE001 - any unreadable file is reported, not fatal
                failures.append({"audio": sources[i], "error": f"{type(err).__name__}: {err}"})
        if clips:
            codes, n = feature_extractor.encode_waveforms(clips, padding="longest")
            ids, _ = feature_extractor.wrap_codes(codes, n)
            for b, i in enumerate(rows):
                input_ids.append(ids[b, :, : int(n[b]) + 2].to(torch.int16).numpy())
                lengths.append(int(n[b]) + 2)
                good.append(i)
        if progress is not None:
            progress.update(min(batch_size, len(shard) - start))

    import pyarrow as pa

    codes = datasets.Dataset(
        pa.table(
            {
                "input_ids": _nested_int16(input_ids),
                "length": pa.array(lengths, pa.int32()),
                SOURCE_COLUMN: pa.array([sources[i] for i in good], pa.string()),
            }
        )
    )
    kept = [c for c in shard.column_names if c != audio_column_name] if keep_columns else []
    if not kept:  # a dataset without columns has no rows either, so it cannot take the code columns
        return codes, failures
    out = datasets.concatenate_datasets([shard.select(good).select_columns(kept).flatten_indices(), codes], axis=1)
    return out, failures


def _nested_int16(rows):
    """list of int16 arrays (K, L_i) -> Arrow list<list<int16>> without going through Python lists."""
    import pyarrow as pa

    flat = np.concatenate([r.ravel() for r in rows]) if rows else np.zeros(0, np.int16)
    inner = np.concatenate([[0], np.cumsum([r.shape[1] for r in rows for _ in range(r.shape[0])])]).astype(np.int32)
    outer = np.concatenate([[0], np.cumsum([r.shape[0] for r in rows])]).astype(np.int32)
    codebooks = pa.ListArray.from_arrays(pa.array(inner), pa.array(flat, type=pa.int16()))
    return pa.ListArray.from_arrays(pa.array(outer), codebooks)


def _shard_names(num_shards: int) -> list[str]:
    return [f"shard-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]


def _drop_stale_shards(work_dir, num_shards, identities, split_name):
    """Deletes the finished shards of `work_dir` that another run made from other files (or with another number of
    shards), so that they are tokenized again: a run killed and restarted on other data never mixes the two."""
    names = _shard_names(num_shards)
    for entry in sorted(os.listdir(work_dir)) if os.path.isdir(work_dir) else []:
        path = os.path.join(work_dir, entry)
        if entry in names:
            start, end = _shard_range(len(identities), num_shards, names.index(entry))
            recorded = _read_json(os.path.join(path, "shard_info.json"), default={}).get("inputs_sha256")
            if recorded == inputs_digest(identities[start:end]):
                continue
            logger.warning(
                "Split %s: %s was made from other input files (rows %d-%d); tokenizing it again.",
                split_name,
                entry,
                start,
                end - 1,
            )
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class PretokenizeSettings:
    """How `pretokenize` works, checked once where it enters (see `pretokenize` for each field)."""

    audio_column_name: str = "audio"
    batch_size: int = 8
    keep_columns: bool = True
    num_shards: int | None = None
    resume: bool = True
    show_progress: bool = True
    if_inputs_changed: str = "raise"

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.if_inputs_changed not in IF_INPUTS_CHANGED:
            raise ValueError(f"if_inputs_changed must be one of {IF_INPUTS_CHANGED}, got {self.if_inputs_changed!r}.")


def _pretokenize_split(dataset, feature_extractor, split_dir, work_dir, num_shards, settings, state):
    audio_column_name = settings.audio_column_name
    num_shards = min(num_shards, max(1, len(dataset)))
    names = _shard_names(num_shards)
    error = None
    try:
        mine = [i for i in range(num_shards) if i % state.num_processes == state.process_index]
        todo = [i for i in mine if not _finished_shard(os.path.join(work_dir, names[i]), split_dir)]
        rows = sum(len(range(*_shard_range(len(dataset), num_shards, i))) for i in todo)
        progress = None
        if settings.show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=rows, desc=f"tokenizing (rank {state.process_index})", position=state.process_index)
        for i in todo:
            shard = dataset.select(range(*_shard_range(len(dataset), num_shards, i)))
            identities = audio_identities(shard, audio_column_name)
            out, failures = _tokenize_shard(
                shard,
                feature_extractor,
                audio_column_name,
                settings.batch_size,
                settings.keep_columns,
                progress,
                [identity[0] for identity in identities],
            )
            tmp = os.path.join(work_dir, f".tmp-{names[i]}")
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            if len(out) > 0:  # datasets cannot load an empty saved dataset back; an all-failed shard keeps its report
                out.save_to_disk(tmp)
            with open(os.path.join(tmp, "shard_info.json"), "w") as f:
                json.dump({"inputs_sha256": inputs_digest(identities), "failures": failures}, f)
            write_checksums(tmp)  # verified when a resumed run reuses the shard
            os.replace(tmp, os.path.join(work_dir, names[i]))
        if progress is not None:
            progress.close()
    except (
        Exception
    ) as err:  # shared with the other processes by wait_for_everyone_or_raise, so that none of them waits forever
        error = err
    wait_for_everyone_or_raise(state, error)

    failures = []
    try:
        if state.is_main_process:
            parts = [
                datasets.load_from_disk(os.path.join(work_dir, n))
                for n in names
                if os.path.isfile(os.path.join(work_dir, n, "state.json"))
            ]
            for n in names:
                failures += _read_json(os.path.join(work_dir, n, "shard_info.json"), default={})["failures"]
            if not parts:
                raise ValueError(
                    f"No clip of {split_dir} could be tokenized ({len(failures)} unreadable or empty files); first: "
                    + "; ".join(f"{f['audio']}: {f['error']}" for f in failures[:3])
                )
            for part, n in zip(parts, [n for n in names if os.path.isfile(os.path.join(work_dir, n, "state.json"))]):
                check_code_ids(part, os.path.join(work_dir, n))  # a shard damaged since it was written is not merged
            merged = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
            _save_split(merged, split_dir)
    except Exception as err:
        error = err
    wait_for_everyone_or_raise(state, error)
    return failures


def _finished_shard(folder: str, split_dir: str) -> bool:
    """A shard folder exists and its files match their checksums; a damaged one is deleted (and tokenized again)
    with a warning naming the file."""
    if not os.path.isdir(folder):
        return False
    problem = checksum_problem(folder)
    if problem is None:
        return True
    logger.warning("%s: a finished shard is damaged (%s): tokenizing it again.", split_dir, problem)
    shutil.rmtree(folder, ignore_errors=True)
    return False


def _save_split(dataset, split_dir: str) -> None:
    """Saves a merged split whole or not at all: into a temporary folder beside it, with its checksums, then moved
    into place (a kill or a full disk leaves no torn arrow file in `split_dir`)."""
    parent = os.path.dirname(os.path.abspath(split_dir))
    tmp = os.path.join(parent, f".tmp-merge-{os.path.basename(split_dir)}")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(tmp)
    write_checksums(tmp)
    if os.path.isfile(os.path.join(split_dir, "state.json")) or not os.path.isdir(split_dir):
        shutil.rmtree(split_dir, ignore_errors=True)
        os.replace(tmp, split_dir)
        return
    for name in os.listdir(tmp):  # a single Dataset is saved in the output folder itself, beside its other files
        os.replace(os.path.join(tmp, name), os.path.join(split_dir, name))
    os.rmdir(tmp)


def _shard_range(n, num_shards, i):
    """Rows [start, end) of shard i: balanced, so no shard is empty while num_shards <= n (ceil-sized shards leave
    the last ones empty, e.g. 5 rows in 4 shards, and `Dataset.select` rejects an empty range at the end)."""
    return i * n // num_shards, (i + 1) * n // num_shards


def _settings_differences(previous: dict, settings: dict) -> list[str]:
    """["max_duration: 2.0 then, 1.0 now", ...] between two tokenization settings (feature extractor flattened)."""

    def flat(d):
        return {**{k: v for k, v in d.items() if k != "feature_extractor"}, **d.get("feature_extractor", {})}

    before, now = flat(previous), flat(settings)
    keys = sorted(set(before) | set(now))
    return [f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in keys if before.get(k) != now.get(k)]


def _clear_output(output_dir: str) -> None:
    """Empties a pre-tokenizer output folder (not the lock file this run holds)."""
    for entry in os.listdir(output_dir):
        if entry == LOCK_FILE:
            continue
        path = os.path.join(output_dir, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def _check_ours(output_dir: str) -> None:
    """Refuses to write into (or delete) a folder that holds something other than a pre-tokenizer output."""
    entries = [e for e in os.listdir(output_dir) if e != LOCK_FILE]
    if entries and INFO_FILE not in entries:
        raise ValueError(
            f"{output_dir} is not empty ({', '.join(sorted(entries)[:5])}{', ...' if len(entries) > 5 else ''}) and "
            f"holds no {INFO_FILE}: it is not a pre-tokenizer output, so nothing is written there (nor deleted). "
            "Choose a new or empty folder."
        )


def _read_inputs(output_dir: str, name: str) -> list[tuple] | None:
    path = os.path.join(output_dir, INPUTS_DIR, f"{name}.parquet")
    if not os.path.isfile(path):
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return list(zip(*(table.column(c).to_pylist() for c in ("source", "size", "modified_ns", "content"))))


def _write_inputs(output_dir: str, name: str, identities) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(os.path.join(output_dir, INPUTS_DIR), exist_ok=True)
    columns = list(zip(*identities)) if identities else [[], [], [], []]
    table = pa.table(
        {
            "source": pa.array(columns[0], pa.string()),
            "size": pa.array(columns[1], pa.int64()),
            "modified_ns": pa.array(columns[2], pa.int64()),
            "content": pa.array(columns[3], pa.string()),
        }
    )
    pq.write_table(table, os.path.join(output_dir, INPUTS_DIR, f"{name}.parquet"))


def describe_input_changes(previous: list[tuple] | None, current: list[tuple], limit: int = 3) -> str:
    """What differs between the input identities a split was tokenized from and the current ones, in words."""
    if previous is None:
        return "there is no record of the files it was tokenized from (made by an older version)"
    before = {identity[0]: identity for identity in previous}
    now = {identity[0]: identity for identity in current}
    changed = [name for name in now if name in before and now[name] != before[name]]
    added = [name for name in now if name not in before]
    removed = [name for name in before if name not in now]

    def detail(name):
        (_, size0, time0, content0), (_, size1, time1, content1) = before[name], now[name]
        if size1 < 0:
            return f"{name} (missing now)"
        what = [f"size {size0} -> {size1}"] if size0 != size1 else []
        what += ["modification time changed"] if time0 != time1 else []
        what += ["content changed"] if content0 != content1 else []
        return f"{name} ({', '.join(what)})"

    def listing(names, show=str):
        return ", ".join(show(n) for n in names[:limit]) + (", ..." if len(names) > limit else "")

    parts = [f"{len(changed)} changed: {listing(changed, detail)}"] if changed else []
    parts += [f"{len(added)} new: {listing(added)}"] if added else []
    parts += [f"{len(removed)} no longer listed: {listing(removed)}"] if removed else []
    if not parts:
        parts = ["the same files in another order"]
    return f"{len(current)} files now, {len(previous)} then; " + "; ".join(parts)


def pretokenize(
    dataset,
    feature_extractor,
    output_dir,
    audio_column_name: str = "audio",
    batch_size: int = 8,
    keep_columns: bool = True,
    num_shards: int | None = None,
    resume: bool = True,
    show_progress: bool = True,
    if_inputs_changed: str = "raise",
    wait_for_folder: float = 0.0,
):
    """
    Encodes every clip of `dataset` (Dataset or DatasetDict, audio column undecoded, see `load_audio_dataset`)
    with `feature_extractor` and writes the result to `output_dir` (layout in the module docstring).

    Works the same in one process and under `accelerate launch`: each rank encodes its own shards, rank 0 merges,
    and every rank returns the merged result. Unreadable, empty or truncated files are skipped, logged by name at
    the end and listed in `output_dir/failures.json`. With `resume=True` finished shards (and finished splits)
    made from the same files with the same codec are reused; `resume=False` starts over. An error on any process
    (a split without one readable clip, another codec, a folder in use, ...) is raised on every process, with the
    same message.

    Args:
        if_inputs_changed: what to do with a finished split whose input files differ from `dataset`'s: "raise" a
            ValueError saying what differs, or "retokenize" it (for a cache folder this code owns).
        wait_for_folder: seconds to wait while another run holds `output_dir` (it is tokenizing the same audio:
            once it is done, its splits are reused); 0 raises `FolderInUseError` at once.
    Returns:
        the same type as `dataset` (Dataset or DatasetDict), loaded from `output_dir`.
    Raises:
        FolderInUseError: another run is writing `output_dir`.
        FolderNotWritableError: `output_dir` cannot be written.
        ValueError: bad arguments, another codec, other input files (with "raise"), or a folder that is not a
            pre-tokenizer output.
    """
    settings = PretokenizeSettings(
        audio_column_name, batch_size, keep_columns, num_shards, resume, show_progress, if_inputs_changed
    )
    state = process_state()
    is_dict = isinstance(dataset, datasets.DatasetDict)
    splits = dataset if is_dict else {None: dataset}
    splits = dict(splits)
    for split, ds in splits.items():
        if audio_column_name not in ds.column_names:
            raise ValueError(
                f"Audio column '{audio_column_name}' not found{f' in split {split!r}' if split else ''}; "
                f"columns are {ds.column_names}."
            )
        if isinstance(ds.features[audio_column_name], datasets.Audio):  # datasets' decoding needs torchcodec
            splits[split] = ds.cast_column(audio_column_name, datasets.Audio(decode=False))
        clash = [c for c in WRITTEN_COLUMNS if keep_columns and c in ds.column_names and c != audio_column_name]
        if clash:
            raise ValueError(
                f"The dataset{f' split {split!r}' if split else ''} already has column(s) {clash}, which the "
                "tokenized output writes; rename them or drop the other columns (keep_columns=False / --drop_columns)."
            )
    output_dir = os.fspath(output_dir)

    lock = claim_output_folder(output_dir, state, wait_seconds=wait_for_folder)
    needed = None
    try:
        needed = _check_free_space(splits, feature_extractor, output_dir, state) if state.is_main_process else None
        return _pretokenize_locked(splits, is_dict, feature_extractor, output_dir, settings, state)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(
                output_dir, "pre-tokenizing", needed, "rerun the same command: finished shards are kept"
            ) from err
        raise
    finally:
        if lock is not None:
            lock.release()


def output_bytes(num_clips: int, feature_extractor) -> int:
    """
    At most how many bytes the codes of `num_clips` clips take on disk: clips x (max_duration x 75 frames/s + 2) x
    codebooks x 2 bytes (int16), plus Arrow's 4-byte offset per codebook list and per row (clips shorter than
    max_duration take less).
    """
    codebooks = feature_extractor.num_codebooks
    return num_clips * ((feature_extractor.max_frames + 2) * codebooks * 2 + 4 * (codebooks + 1) + 64)


def _check_free_space(splits, feature_extractor, output_dir, state) -> int:
    """Refuses to start when the disk of `output_dir` cannot hold the codes (`output_bytes`); warns when it cannot
    hold them twice (the shards and the merged split exist together until the merge ends). Returns the estimate."""
    todo = [
        ds for split, ds in splits.items() if not os.path.isfile(os.path.join(output_dir, f".done-{split or 'data'}"))
    ]
    clips = sum(len(ds) for ds in todo)
    needed = output_bytes(clips, feature_extractor)
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        raise FolderNotWritableError(
            f"{output_dir}: its disk has {free:,} bytes free, but the codes of {clips} clips still to tokenize "
            f"take up to {needed:,} bytes (clips x {feature_extractor.max_frames + 2} frames x "
            f"{feature_extractor.num_codebooks} codebooks x 2 bytes). Free some space or choose another folder."
        )
    if free < 2 * needed:
        logger.warning(
            "%s: %s bytes free; the shards and the merged codes may need up to %s at once: the merge may run out of "
            "space (rerunning the same command resumes it).",
            output_dir,
            f"{free:,}",
            f"{2 * needed:,}",
        )
    return needed


def _pretokenize_locked(splits, is_dict, feature_extractor, output_dir, settings: PretokenizeSettings, state):
    """`pretokenize` while the main process holds the folder lock."""
    audio_column_name, if_inputs_changed = settings.audio_column_name, settings.if_inputs_changed
    made_with = {
        "feature_extractor": {
            k: v for k, v in feature_extractor.to_dict().items() if k not in ("codec_name_or_path", "codec_batch_size")
        },
        "codec_name_or_path": feature_extractor.codec_name_or_path,
        "codec_sha256": codec_digest(feature_extractor) if state.is_main_process else None,
        "audio_column_name": audio_column_name,
        "keep_columns": settings.keep_columns,
    }
    made_with = json.loads(json.dumps(made_with))
    info_path = os.path.join(output_dir, INFO_FILE)
    failures_path = os.path.join(output_dir, "failures.json")
    info, error = {}, None
    try:
        if state.is_main_process:
            _check_ours(output_dir)
            info = _read_json(info_path, default={})
            previous = {k: v for k, v in info.items() if k != "splits"}
            if info and not settings.resume:
                _clear_output(output_dir)
                info = {}
            elif info and previous != made_with:
                differences = "; ".join(_settings_differences(previous, made_with))
                if if_inputs_changed == "raise":
                    raise ValueError(
                        f"{output_dir} holds codes made with another codec or settings ({differences}); use another "
                        "output folder, or --overwrite_cache (resume=False) to tokenize again from scratch."
                    )
                logger.warning(
                    "%s was made with another codec or settings (%s): starting over.", output_dir, differences
                )
                _clear_output(output_dir)
                info = {}
            info = dict(made_with, splits=info.get("splits", {}))
            _write_json(info_path, info)
    except Exception as err:
        error = err
    wait_for_everyone_or_raise(state, error)

    for split, ds in splits.items():
        split_dir = os.path.join(output_dir, split) if is_dict else output_dir
        name = split if is_dict else "data"
        done_marker = os.path.join(output_dir, f".done-{name}")
        work_dir = os.path.join(output_dir, "_work", name)
        shards = settings.num_shards or max(state.num_processes, math.ceil(len(ds) / ROWS_PER_SHARD))
        identities = None
        try:
            if state.is_main_process:
                identities = audio_identities(ds, audio_column_name)
                digest = inputs_digest(identities)
                recorded = info["splits"].get(name)  # {"rows", "inputs_sha256"}; a bare row count before
                recorded = recorded.get("inputs_sha256") if isinstance(recorded, dict) else None
                if os.path.isfile(done_marker) and recorded != digest:
                    changes = describe_input_changes(_read_inputs(output_dir, name), identities)
                    if if_inputs_changed == "raise":
                        raise ValueError(
                            f"{output_dir} holds codes of other input files for split {name!r} ({changes}). Use "
                            "another output folder, or --overwrite_cache (resume=False) to tokenize again."
                        )
                    logger.warning("Split %r of %s is stale (%s): tokenizing it again.", name, output_dir, changes)
                    # Deleted, not overwritten: a process may still have the old files memory-mapped.
                    if is_dict:
                        os.remove(done_marker)
                        shutil.rmtree(split_dir, ignore_errors=True)
                    else:
                        _clear_output(output_dir)
                        _write_json(info_path, info)
                if not os.path.isfile(done_marker):
                    _drop_stale_shards(work_dir, min(shards, max(1, len(ds))), identities, name)
                    os.makedirs(work_dir, exist_ok=True)
        except Exception as err:
            error = err
        wait_for_everyone_or_raise(state, error)
        if os.path.isfile(done_marker):
            continue
        failures = _pretokenize_split(ds, feature_extractor, split_dir, work_dir, shards, settings, state)
        try:
            if state.is_main_process:
                # the report is saved with the split, so a resumed run still reports the splits finished before
                report = _read_json(failures_path, default={})
                report[name] = failures
                _write_json(failures_path, report)
                _write_inputs(output_dir, name, identities)
                info["splits"][name] = {"rows": len(ds), "inputs_sha256": inputs_digest(identities)}
                _write_json(info_path, info)
                open(done_marker, "w").close()
        except Exception as err:
            error = err
        wait_for_everyone_or_raise(state, error)

    try:
        if state.is_main_process:
            if is_dict:
                _write_json(os.path.join(output_dir, "dataset_dict.json"), {"splits": list(splits)})
            shutil.rmtree(os.path.join(output_dir, "_work"), ignore_errors=True)
            report = _read_json(failures_path, default={})
            bad = [(s, f) for s, fs in report.items() if s in info["splits"] for f in fs]
            if bad:
                logger.warning(
                    "%d file(s) could not be tokenized and were left out (listed in %s):\n%s",
                    len(bad),
                    failures_path,
                    "\n".join(f"  [{s}] {f['audio']}: {f['error']}" for s, f in bad),
                )
    except Exception as err:
        error = err
    wait_for_everyone_or_raise(state, error)
    return load_tokenized_dataset(output_dir)


def _write_json(path, obj) -> None:
    """Writes `path` whole or not at all (temporary file, then rename): a killed run never leaves half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def _read_json(path, default):
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def read_tokenization_info(output_dir) -> dict | None:
    """The settings a `pretokenize` (`tokenization_info.json`) or `pretokenize_shards` (`index.json`) output was made
    with, or None if it has none."""
    from .tokenize_shards import is_code_shards, read_index

    if is_code_shards(output_dir):
        return read_index(output_dir)["codec"]
    return _read_json(os.path.join(output_dir, "tokenization_info.json"), default=None)


def load_tokenized_dataset(path, flag: str = "--tokenized_dataset"):
    """
    Loads a `pretokenize` output: a DatasetDict (if it was written from one) or a Dataset, after checking that it is
    whole (`code_integrity.check_saved_dataset`: finished, readable JSON files, files matching their checksums); or a
    `pretokenize_shards` output (a DatasetDict of its shards, memory-mapped as they are). Every id is checked to be in
    range (`check_code_ids`; the checks read every byte, so only the local main process runs them). Raises
    `CorruptCodesError` (a ValueError) naming the file.
    """
    from .tokenize_shards import is_code_shards, load_code_shards

    path = os.fspath(path)
    # One process per machine reads every byte (the others load the same files after it, see main_process_first).
    check = process_state().is_local_main_process
    if is_code_shards(path):
        loaded = load_code_shards(path)
    else:
        check_saved_dataset(path, flag=flag, verify=check)
        try:
            loaded = datasets.load_from_disk(path)
        except (OSError, ValueError) as err:  # e.g. "Invalid flatbuffers message." from a damaged arrow file
            folders = [path] + [os.path.join(path, e) for e in sorted(os.listdir(path))]
            for folder in folders:
                if os.path.isdir(folder) and (problem := arrow_problem(folder)):
                    raise CorruptCodesError(f"{flag} {path}: {problem}. Tokenize the audio again.") from err
            raise
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    for split, ds in splits if check else []:
        check_code_ids(ds, os.path.join(path, split) if split is not None else path)
    return loaded


@dataclass
class PretokenizeArguments:
    """Where the codes go and how the work is split (the codec and audio flags are `tokenization.audio_arguments`')."""

    output_dir: str = field(metadata={"help": "Folder the tokenized dataset is written to (and resumed from)."})
    num_shards: int | None = field(
        default=None,
        metadata={
            "help": "Shards per split (default: max(processes, rows / 1024)); fix it to resume "
            "with another number of processes."
        },
    )
    drop_columns: bool = field(default=False, metadata={"help": "Keep only input_ids and length."})
    device: str | None = field(
        default=None, metadata={"help": "Codec device. Default: this process's accelerate device."}
    )
    label_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Tar shards (--data_files): the field of each sample's json member (or its cls / txt member) "
            "kept as this column. Default: no labels."
        },
    )
    split_name: str = field(default="train", metadata={"help": "Tar shards (--data_files): the split they form."})


def main(argv=None):
    try:
        return _main(argv)
    except FolderNotWritableError as err:  # a full disk, a read-only folder: one line, not a traceback
        raise SystemExit(f"error: {err}") from err


def _main(argv=None):
    parser = HfArgumentParser((CodecArguments, AudioDataArguments, PretokenizeArguments))
    codec_args, data_args, run_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    claim_output_folder(run_args.output_dir, flag="--output_dir")  # before any work; held until the process ends
    feature_extractor = load_feature_extractor(codec_args)
    feature_extractor.to(run_args.device or process_state().device)
    if data_args.streaming or data_args.data_files is not None:
        return _main_shards(codec_args, data_args, run_args, feature_extractor)
    dsd = load_audio_splits(data_args, codec_args)
    out = pretokenize(
        dsd,
        feature_extractor,
        run_args.output_dir,
        data_args.audio_column_name,
        data_args.preprocessing_batch_size,
        keep_columns=not run_args.drop_columns,
        num_shards=run_args.num_shards,
        resume=not data_args.overwrite_cache,
    )
    if process_state().is_main_process:
        logger.info("wrote %s: %s", run_args.output_dir, out)


def _main_shards(codec_args, data_args, run_args, feature_extractor):
    """Tar shards (--data_files) or a streamed dataset (--streaming): one code shard per input shard
    (`tokenize_shards.py`)."""
    from .tokenize_shards import pretokenize_shards, shard_sources

    sources = shard_sources(data_args, codec_args, run_args.split_name)
    summary = pretokenize_shards(
        sources,
        feature_extractor,
        run_args.output_dir,
        audio_column_name=data_args.audio_column_name,
        label_column_name=run_args.label_column_name,
        batch_size=data_args.preprocessing_batch_size,
        resume=not data_args.overwrite_cache,
        show_progress=True,
    )
    if process_state().is_main_process:
        logger.info("wrote %s: %s", run_args.output_dir, json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
    shutdown()
