"""
Pre-tokenize an audio dataset once: audio -> EnCodec code ids, saved as a `datasets` dataset on disk.

    python -m tokenization.tokenize_dataset --feature_extractor_name_or_path <fe> --data_dir <audiofolder> \
        --output_dir <out> [--dataset_name ...] [--train_file a.csv --validation_file b.csv] [--batch_size 8]
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
    length     int32 `frames + 2` (the attention mask is all ones over that length; `pad_code_batch` builds it).

Shards are contiguous row ranges; rank r of W processes takes shards r, r+W, ...; rank 0 concatenates them in
order. A shard is finished once its folder exists (it is written under a temporary name and renamed), so an
interrupted run restarted with the same arguments redoes only unfinished shards. The default number of shards is
max(number of processes, rows / 1024): resume with the same number of processes, or fix `--num_shards`.
If any process fails (e.g. no clip of a split is readable), every process raises the same error.

Clips are encoded `batch_size` at a time with `padding="longest"`; the codec is causal, so a clip's codes do not
depend on its batch (exactly so in float64; in float32 a near-tie can flip a code, ~1e-4 of codes measured).
"""

import argparse
import json
import logging
import math
import os
import shutil

import datasets
import numpy as np
import torch

from training.collators import pad_code_rows

from .audio_io import audio_name, decode_audio, load_audio_dataset
from .feature_extraction_audioformer import PAD_TOKEN_ID


logger = logging.getLogger(__name__)

ROWS_PER_SHARD = 1024


def _state():
    """The accelerate process state. Without a GPU, processes started by `accelerate launch --multi_gpu` (or
    torchrun) join a gloo (MULTI_CPU) group instead of each running alone."""
    from accelerate import PartialState

    if PartialState._shared_state:
        return PartialState()
    return PartialState(cpu=not torch.cuda.is_available())


def _sync(state, error: Exception | None = None):
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
    except Exception as err:  # shared with the other processes by _sync, so that none of them waits forever
        error = err
    _sync(state, error)

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
    _sync(state, error)
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
    state = _state()
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
    _sync(state, error)

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
        _sync(state, error)

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
    _sync(state, error)
    return load_tokenized_dataset(output_dir)


def _read_json(path, default):
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def load_tokenized_dataset(path):
    """Loads a `pretokenize` output: a DatasetDict (if it was written from one) or a Dataset."""
    return datasets.load_from_disk(os.fspath(path))


def pad_code_batch(examples, pad_token_id: int = PAD_TOKEN_ID, max_length: int | None = None) -> dict:
    """
    Pads pre-tokenized rows into a batch (`collators.pad_code_rows`, which the training collators use).

    Args:
        examples: list of dicts with `input_ids` `(K, L_i)` (nested lists, numpy or torch, e.g. int16 rows) or
            `(L_i,)`; other keys are ignored.
        max_length: pad to this length instead of the longest row (longer rows are cut).
    Returns:
        dict(input_ids LongTensor `(B, K, T)` (or `(B, T)` for 1-D rows), attention_mask LongTensor `(B, T)`).
    """
    if max_length:  # cut, then round the longest row (<= max_length) up to exactly max_length
        examples = [{"input_ids": np.asarray(e["input_ids"])[..., :max_length]} for e in examples]
    return pad_code_rows(examples, pad_token_id, pad_to_multiple_of=max_length)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--feature_extractor_name_or_path",
        default=None,
        help="AudioFormerFeatureExtractor folder / Hub name (or give --codec_name_or_path).",
    )
    p.add_argument("--codec_name_or_path", default="facebook/encodec_24khz")
    p.add_argument("--bandwidth", type=float, default=3.0)
    p.add_argument("--max_duration", type=float, default=10.0)
    p.add_argument("--dataset_name", default=None)
    p.add_argument("--dataset_config_name", default=None)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--train_file", default=None)
    p.add_argument("--validation_file", default=None)
    p.add_argument("--audio_column_name", default="audio")
    p.add_argument("--cache_dir", default=None)
    p.add_argument("--trust_remote_code", action="store_true")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--num_shards", type=int, default=None)
    p.add_argument("--drop_columns", action="store_true", help="keep only input_ids and length")
    p.add_argument("--no_resume", action="store_true", help="delete output_dir and start over")
    p.add_argument("--device", default=None, help="codec device, default: this process's accelerate device")
    return p.parse_args(argv)


def main(argv=None):
    from .feature_extraction_audioformer import AudioFormerFeatureExtractor

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.feature_extractor_name_or_path:
        fe = AudioFormerFeatureExtractor.from_pretrained(args.feature_extractor_name_or_path)
    else:
        fe = AudioFormerFeatureExtractor(
            args.codec_name_or_path, bandwidth=args.bandwidth, max_duration=args.max_duration
        )
    fe.to(args.device or _state().device)
    dsd = load_audio_dataset(
        args.dataset_name,
        args.dataset_config_name,
        args.data_dir,
        args.train_file,
        args.validation_file,
        args.audio_column_name,
        args.cache_dir,
        trust_remote_code=args.trust_remote_code,
    )
    out = pretokenize(
        dsd,
        fe,
        args.output_dir,
        args.audio_column_name,
        args.batch_size,
        keep_columns=not args.drop_columns,
        num_shards=args.num_shards,
        resume=not args.no_resume,
    )
    if _state().is_main_process:
        logger.info("wrote %s: %s", args.output_dir, out)


def shutdown():
    """Leaves the process group cleanly: a gloo group left to the interpreter's exit can abort the process
    ("terminate called without an active exception") after all the work is done."""
    state = _state()
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    main()
    shutdown()
