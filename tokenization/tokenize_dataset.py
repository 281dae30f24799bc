"""
Pre-tokenize an audio dataset once: audio -> EnCodec code ids, saved as a `datasets` dataset on disk.

    python -m tokenization.tokenize_dataset --feature_extractor_name <fe> --data_dir <audiofolder> --output_dir <out> \
        [--dataset_name ...] [--train_file a.csv --validation_file b.csv] [--preprocessing_batch_size 8]
    accelerate launch --num_processes 4 -m tokenization.tokenize_dataset ...   # each process takes its own shards
    accelerate launch --multi_gpu --num_processes 2 -m tokenization.tokenize_dataset ...  # CPU-only machine (gloo)

Output (what the training scripts read, `load_tokenized_dataset(output_dir)` or `datasets.load_from_disk`):

    output_dir/
      dataset_dict.json            # when the input was a DatasetDict: {"splits": [...]}
      <split>/                     # Dataset.save_to_disk: data-*.arrow, state.json, dataset_info.json
                                   # (a single Dataset input is saved in output_dir itself)
      tokenization_info.json       # feature-extractor settings and split sizes; a resume must match them
      failures.json                # {split: [{"audio": name, "error": reason}, ...]} unreadable / empty files
      _work/<split>/shard-00003-of-00016/   # finished shards ("data" for a single Dataset); deleted once merged
      .done-<split>                # the split is merged (skipped on resume)

Each row keeps every input column except the audio column, plus
    input_ids  int16 list of lists `(num_codebooks, frames + 2)` = [BOA, c+3, ..., EOA] per codebook, unpadded
    length     int32 `frames + 2` (the attention mask is all ones over that length).

Shards are contiguous row ranges; rank r of W processes takes shards r, r+W, ...; rank 0 concatenates them in
order. A shard is finished once its folder exists (it is written under a temporary name and renamed), so an
interrupted run restarted with the same arguments redoes only unfinished shards. The default number of shards is
max(number of processes, rows / 1024): resume with the same number of processes, or fix `--num_shards`.
If any process fails (e.g. no clip of a split is readable), every process raises the same error.

The codec and audio flags are those of the training scripts (`tokenization/arguments.py`): `--feature_extractor_name`
or `--codec_name_or_path` / `--bandwidth` / `--max_duration`, `--preprocessing_batch_size`, and `--overwrite_cache`
(start over instead of resuming).

Clips are encoded `batch_size` at a time with `padding="longest"`; the codec is causal, so a clip's codes do not
depend on its batch (exactly so in float64; in float32 a near-tie can flip a code, ~1e-4 of codes measured).
"""

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

from .arguments import AudioDataArguments, CodecArguments, load_feature_extractor
from .audio_io import audio_name, decode_audio, load_audio_dataset


logger = logging.getLogger(__name__)

ROWS_PER_SHARD = 1024


def process_state():
    """The accelerate process state. Without a GPU, processes started by `accelerate launch --multi_gpu` (or
    torchrun) join a gloo (MULTI_CPU) group instead of each running alone."""
    from accelerate import PartialState

    if PartialState._shared_state:
        return PartialState()
    return PartialState(cpu=not torch.cuda.is_available())


def wait_for_everyone_or_raise(state, error: Exception | None = None):
    """
    `state.wait_for_everyone()` that also shares failures. Every process calls it with the exception it caught
    since the last call (or None); if any process failed, every process raises the same error (a ValueError for
    bad input, else a RuntimeError) instead of the others waiting at the next barrier until the timeout.
    """
    message = None if error is None else (type(error).__name__, str(error))
    if state.num_processes > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        messages = [None] * state.num_processes
        torch.distributed.all_gather_object(messages, message)
        failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
    else:  # one process (or a backend without torch.distributed): nothing to share
        if error is not None:
            raise error
        state.wait_for_everyone()
        return
    if not failed:
        return
    rank, (kind, text) = failed[0]
    if kind == "ValueError":
        raise ValueError(text) from error
    raise RuntimeError(f"Pre-tokenization failed on process {rank}: {kind}: {text}") from error


def _tokenize_shard(shard, feature_extractor, audio_column_name, batch_size, keep_columns, progress):
    """Encodes one shard; returns (tokenized Dataset, failures list)."""
    input_ids, lengths, good, failures = [], [], [], []
    audio_values = shard[audio_column_name]
    for start in range(0, len(shard), batch_size):
        clips, rows = [], []
        for i in range(start, min(start + batch_size, len(shard))):
            value = audio_values[i]
            try:
                audio, sr = decode_audio(value, max_seconds=feature_extractor.max_duration + 0.01)
                clips.append(feature_extractor._prepare(audio, sr))  # raises on empty audio, like bad files
                rows.append(i)
            except Exception as err:  # noqa: BLE001 - any unreadable file is reported, not fatal
                failures.append({"audio": audio_name(value), "error": f"{type(err).__name__}: {err}"})
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
        pa.table({"input_ids": _nested_int16(input_ids), "length": pa.array(lengths, pa.int32())})
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


def _pretokenize_split(
    dataset,
    feature_extractor,
    split_dir,
    work_dir,
    audio_column_name,
    batch_size,
    keep_columns,
    num_shards,
    show_progress,
    state,
):
    num_shards = min(num_shards, max(1, len(dataset)))
    names = [f"shard-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]
    error = None
    try:
        mine = [i for i in range(num_shards) if i % state.num_processes == state.process_index]
        todo = [i for i in mine if not os.path.isdir(os.path.join(work_dir, names[i]))]
        rows = sum(len(range(*_shard_range(len(dataset), num_shards, i))) for i in todo)
        progress = None
        if show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=rows, desc=f"tokenizing (rank {state.process_index})", position=state.process_index)
        for i in todo:
            shard = dataset.select(range(*_shard_range(len(dataset), num_shards, i)))
            out, failures = _tokenize_shard(
                shard, feature_extractor, audio_column_name, batch_size, keep_columns, progress
            )
            tmp = os.path.join(work_dir, f".tmp-{names[i]}")
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            if len(out) > 0:  # datasets cannot load an empty saved dataset back; an all-failed shard keeps its report
                out.save_to_disk(tmp)
            with open(os.path.join(tmp, "failures.json"), "w") as f:
                json.dump(failures, f)
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
                with open(os.path.join(work_dir, n, "failures.json")) as f:
                    failures += json.load(f)
            if not parts:
                raise ValueError(
                    f"No clip of {split_dir} could be tokenized ({len(failures)} unreadable or empty files); first: "
                    + "; ".join(f"{f['audio']}: {f['error']}" for f in failures[:3])
                )
            merged = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
            merged.save_to_disk(split_dir)
    except Exception as err:
        error = err
    wait_for_everyone_or_raise(state, error)
    return failures


def _shard_range(n, num_shards, i):
    """Rows [start, end) of shard i: balanced, so no shard is empty while num_shards <= n (ceil-sized shards leave
    the last ones empty, e.g. 5 rows in 4 shards, and `Dataset.select` rejects an empty range at the end)."""
    return i * n // num_shards, (i + 1) * n // num_shards


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
):
    """
    Encodes every clip of `dataset` (Dataset or DatasetDict, audio column undecoded, see `load_audio_dataset`)
    with `feature_extractor` and writes the result to `output_dir` (layout in the module docstring).

    Works the same in one process and under `accelerate launch`: each rank encodes its own shards, rank 0 merges,
    and every rank returns the merged result. Unreadable or empty files are skipped, logged by name at the end and
    listed in `output_dir/failures.json`. With `resume=True` finished shards (and finished splits) are reused.
    An error on any process (a split without one readable clip, a resume with other settings, ...) is raised on
    every process, with the same message.

    Returns:
        the same type as `dataset` (Dataset or DatasetDict), loaded from `output_dir`.
    """
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
        clash = [
            c for c in ("input_ids", "length") if keep_columns and c in ds.column_names and c != audio_column_name
        ]
        if clash:
            raise ValueError(
                f"The dataset{f' split {split!r}' if split else ''} already has column(s) {clash}, which the "
                "tokenized output writes; rename them or drop the other columns (keep_columns=False / --drop_columns)."
            )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    output_dir = os.fspath(output_dir)
    info = {
        "feature_extractor": {
            k: v for k, v in feature_extractor.to_dict().items() if k not in ("codec_name_or_path", "codec_batch_size")
        },
        "codec_name_or_path": feature_extractor.codec_name_or_path,
        "audio_column_name": audio_column_name,
        "keep_columns": keep_columns,
        "splits": {str(s) if is_dict else "data": len(ds) for s, ds in splits.items()},
    }
    info_path = os.path.join(output_dir, "tokenization_info.json")
    failures_path = os.path.join(output_dir, "failures.json")
    error = None
    try:
        if state.is_main_process:
            if os.path.isdir(output_dir) and not resume:
                shutil.rmtree(output_dir)
            previous = _read_json(info_path, default=None)
            if previous is not None and previous != json.loads(json.dumps(info)):
                raise ValueError(
                    f"{output_dir} holds a tokenization with other settings ({info_path}); "
                    "use another output_dir or resume=False to overwrite it."
                )
            os.makedirs(output_dir, exist_ok=True)
            with open(info_path, "w") as f:
                json.dump(info, f, indent=2)
    except Exception as err:
        error = err
    wait_for_everyone_or_raise(state, error)

    for split, ds in splits.items():
        split_dir = os.path.join(output_dir, split) if is_dict else output_dir
        name = split if is_dict else "data"
        done_marker = os.path.join(output_dir, f".done-{name}")
        if os.path.isfile(done_marker):
            continue
        work_dir = os.path.join(output_dir, "_work", name)
        os.makedirs(work_dir, exist_ok=True)
        shards = num_shards or max(state.num_processes, math.ceil(len(ds) / ROWS_PER_SHARD))
        failures = _pretokenize_split(
            ds,
            feature_extractor,
            split_dir,
            work_dir,
            audio_column_name,
            batch_size,
            keep_columns,
            shards,
            show_progress,
            state,
        )
        try:
            if state.is_main_process:
                # the report is saved with the split, so a resumed run still reports the splits finished before
                report = _read_json(failures_path, default={})
                report[name] = failures
                with open(failures_path, "w") as f:
                    json.dump(report, f, indent=2)
                open(done_marker, "w").close()
        except Exception as err:
            error = err
        wait_for_everyone_or_raise(state, error)

    try:
        if state.is_main_process:
            if is_dict:
                with open(os.path.join(output_dir, "dataset_dict.json"), "w") as f:
                    json.dump({"splits": list(splits)}, f)
            shutil.rmtree(os.path.join(output_dir, "_work"), ignore_errors=True)
            report = _read_json(failures_path, default={})
            bad = [(s, f) for s, fs in report.items() for f in fs]
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


def _read_json(path, default):
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def read_tokenization_info(output_dir) -> dict | None:
    """The settings a `pretokenize` output was made with (`tokenization_info.json`), or None if it has none."""
    return _read_json(os.path.join(output_dir, "tokenization_info.json"), default=None)


def load_tokenized_dataset(path):
    """Loads a `pretokenize` output: a DatasetDict (if it was written from one) or a Dataset."""
    return datasets.load_from_disk(os.fspath(path))


@dataclass
class PretokenizeArguments:
    """Where the codes go and how the work is split (the codec and audio flags are `tokenization.arguments`')."""

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


def main(argv=None):
    parser = HfArgumentParser((CodecArguments, AudioDataArguments, PretokenizeArguments))
    codec_args, data_args, run_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    feature_extractor = load_feature_extractor(codec_args)
    feature_extractor.to(run_args.device or process_state().device)
    dsd = load_audio_dataset(
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.data_dir,
        data_args.train_file,
        data_args.validation_file,
        data_args.audio_column_name,
        codec_args.cache_dir,
        token=codec_args.token,
        trust_remote_code=codec_args.trust_remote_code,
    )
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


def shutdown():
    """Leaves the process group cleanly: a gloo group left to the interpreter's exit can abort the process
    ("terminate called without an active exception") after all the work is done."""
    state = process_state()
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    main()
    shutdown()
