"""
Streaming pre-tokenization: WebDataset tar shards (or any `--streaming` dataset) -> one code shard per input shard.

    python -m audioformer.tokenization.tokenize_dataset --feature_extractor_name <fe> \
        --data_files "data/as2m/train-{000000..000999}.tar" --label_column_name labels --output_dir <out>
    python -m audioformer.tokenization.tokenize_dataset ... --dataset_name <hub or builder> --streaming
    accelerate launch --num_machines M --machine_rank r --num_processes N ... \
        -m audioformer.tokenization.tokenize_dataset ...

Input. `--data_files` without `--dataset_name`: WebDataset tar shards, a list of brace patterns
(`train-{000000..000999}.tar`), globs or paths; local or any fsspec URL (`hf://datasets/...`, `s3://...`, where the
filesystem package is installed). A sample is the members sharing a key (the member name up to the first dot of its
base name); its audio is the member ending in flac / wav / mp3 / ogg, its label the `json` member's field
`--label_column_name` (or the whole `cls` / `txt` member). Read with the standard library's `tarfile` in stream
mode over `fsspec.open`: no new dependency, any fsspec URL, and each member is decoded by us, so a member that does
not decode is recorded by its key and skipped (`datasets`' webdataset builder decodes for us and fails the shard).
With `--streaming` (and `--dataset_name`, `--data_dir`, `--data_files` as `datasets.load_dataset` takes them) the
input shards are the `IterableDataset`'s own shards (`num_shards`, `shard(n, i)`), often one per data file.

Work. The unit of work is an input shard: the sorted list of shards is split rank-strided (rank r of W processes,
over all machines, takes shards r, r + W, ...). Clips are decoded and encoded in batches of
`--preprocessing_batch_size` on the process's device, by the same code as the table path (`_tokenize_shard`), so
the codes are the same. Nothing is concatenated or read back by one process.

Output (what `load_tokenized_dataset` / `--tokenized_dataset DIR` read, memory-mapped):

    output_dir/
      index.json                          # format, codec identity (settings + weights hash), per split: the input
                                          # shards, and per output shard its file, rows, seconds of audio, failures;
                                          # "complete" per split and for all; a summary of the last run. Each run
                                          # writes the splits it is given and keeps the others (train, then eval)
      <split>/codes-00003-of-01000.arrow  # Arrow stream: id, input_ids int16 (K, frames + 2), length, the label
                                          # column, source_shard, source_member (the tar member or row)
      <split>/codes-00003-of-01000.json   # the shard's record: its input (URL, size), rows, seconds, failures
      failures.json                       # {split: [{"shard", "key", "error"}, ...]}
      .heartbeat/<rank>                   # touched by each process while it runs (`_wait_for_other_shards`)
      .audioformer.lock                   # while a run writes here

A shard is finished once its record exists: both files are written under a temporary name, then renamed, so a
killed run rerun with the same arguments redoes only unfinished shards (a record made from another input or codec is
redone). Another codec or settings than the folder's is an error (`--overwrite_cache` starts over).
"""

import json
import logging
import os
import re
import shutil
import tarfile
import time

import datasets
import numpy as np

from .folder_lock import LOCK_FILE
from .processes import claim_output_folder, process_state, wait_for_everyone_or_raise


logger = logging.getLogger(__name__)

FORMAT = "audioformer-code-shards/1"
INDEX_FILE = "index.json"
AUDIO_EXTENSIONS = ("flac", "wav", "mp3", "ogg")
LABEL_EXTENSIONS = ("json", "cls", "txt")
HEARTBEAT_DIR = ".heartbeat"
KEY = "__key__"  # a row's key for the failures report (WebDataset's name for it); not written
SAMPLES_PER_CHUNK = 256  # clips decoded and held at once: a shard is streamed, never loaded whole


def expand_braces(pattern: str) -> list[str]:
    """ "a-{000..002}.tar" -> ["a-000.tar", "a-001.tar", "a-002.tar"]; "{x,y}" -> both; groups nest left to right."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[: match.start()], match.group(1), pattern[match.end() :]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        width = len(first) if first.startswith("0") else 0
        step = 1 if int(last) >= int(first) else -1
        items = [str(i).zfill(width) for i in range(int(first), int(last) + step, step)]
    else:
        items = body.split(",")
    return [out for item in items for out in expand_braces(head + item + tail)]


def list_shards(data_files) -> list[str]:
    """Brace patterns, globs and paths (local or fsspec URLs) -> the sorted, unique shard URLs (local ones absolute).
    Raises a ValueError naming a pattern that matches nothing."""
    import fsspec

    patterns = [data_files] if isinstance(data_files, str) else list(data_files)
    urls = set()
    for pattern in patterns:
        for item in expand_braces(pattern):
            fs, _, paths = fsspec.core.get_fs_token_paths(item)
            local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
            if not paths or (not any(c in item for c in "*?[") and not fs.exists(paths[0])):
                raise ValueError(f"--data_files {pattern!r}: {item} matches no file.")
            urls.update(os.path.abspath(p) if local else fs.unstrip_protocol(p) for p in paths)
    return sorted(urls)


def _split_key(name: str) -> tuple[str, str]:
    """ "dir/abc.def.flac" -> ("dir/abc", "def.flac"): WebDataset's key is the path up to the first dot of the
    base name, the rest is the extension."""
    folder, base = os.path.split(name)
    key, _, ext = base.partition(".")
    return os.path.join(folder, key), ext.lower()


def iter_tar_samples(url: str):
    """Yields (key, {extension: bytes, ...}, {extension: member name}) for each sample of a tar shard, streamed."""
    import fsspec

    with fsspec.open(url, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        key, files, names = None, {}, {}
        for member in tar:
            if not member.isfile():
                continue
            k, ext = _split_key(member.name)
            if k != key and key is not None:
                yield key, files, names
                files, names = {}, {}
            key = k
            files[ext] = tar.extractfile(member).read()
            names[ext] = member.name
        if key is not None:
            yield key, files, names


def _label_of(files: dict, label_column_name: str):
    """The sample's label: field `label_column_name` of its json member, else its cls / txt member (a cls member is
    an integer, or integers separated by commas)."""
    if "json" in files:
        meta = json.loads(files["json"])
        if label_column_name not in meta:
            raise KeyError(f"its json member has no field {label_column_name!r} (fields: {sorted(meta)})")
        return meta[label_column_name]
    for ext in ("cls", "txt"):
        if ext in files:
            text = files[ext].decode().strip()
            if ext == "cls":
                values = [int(v) for v in text.split(",")]
                return values[0] if len(values) == 1 else values
            return text
    raise KeyError("it has no json, cls or txt member")


def tar_shard_rows(url: str, label_column_name: str | None):
    """Yields ("row", row) or ("failure", {"shard", "key", "error"}) for each sample of one tar shard. A row is
    {"id", "audio": {"bytes", "path"}, <label column>, "source_shard", "source_member"}. A tar that cannot be read
    to its end keeps the samples before the damage and reports the rest as one failure (key None)."""
    try:
        for key, files, names in iter_tar_samples(url):
            audio_ext = next((e for e in files if e.rsplit(".", 1)[-1] in AUDIO_EXTENSIONS), None)
            try:
                if audio_ext is None:
                    raise ValueError(f"no audio member ({', '.join(AUDIO_EXTENSIONS)}); members: {sorted(names)}")
                row = {"id": os.path.basename(key), "audio": {"bytes": files[audio_ext], "path": names[audio_ext]}}
                if label_column_name is not None:
                    row[label_column_name] = _label_of(files, label_column_name)
            except Exception as err:  # noqa: BLE001 - one bad sample is reported, not fatal
                yield "failure", {"shard": url, "key": key, "error": f"{type(err).__name__}: {err}"}
                continue
            row.update(source_shard=url, source_member=names[audio_ext], **{KEY: key})
            yield "row", row
    except (tarfile.TarError, OSError, EOFError) as err:
        yield "failure", {"shard": url, "key": None, "error": f"unreadable tar: {type(err).__name__}: {err}"}


def stream_shard_rows(dataset, shard_name: str, audio_column_name: str):
    """Yields ("row", row) for each example of one shard of an `IterableDataset` (audio undecoded): its columns, an
    "id" (the audio's file name, or the row number) unless it has one, source_shard and source_member."""
    for i, example in enumerate(dataset):
        value = example[audio_column_name]
        path = value.get("path") if isinstance(value, dict) else None
        member = path or str(i)
        row = dict(example)
        row.setdefault("id", os.path.basename(path) if path else str(i))
        row.update(source_shard=shard_name, source_member=member, **{KEY: member})
        yield "row", row


def _chunks(rows, size):
    """("row" | "failure", item) stream -> lists of at most `size` rows, with the failures met along the way."""
    batch, failures = [], []
    for kind, item in rows:
        (batch if kind == "row" else failures).append(item)
        if len(batch) == size:
            yield batch, failures
            batch, failures = [], []
    if batch or failures:
        yield batch, failures


def _encode_rows(rows, feature_extractor, audio_column_name, batch_size):
    """A list of rows -> (Arrow table of their codes and other columns, failures as {"key", "error"}). The same
    code as the table path, so the codes of a clip are the same by either path."""
    from datasets.utils import logging as datasets_logging

    from .tokenize_dataset import _tokenize_shard

    members = [str(r["source_member"]) for r in rows]
    chunk = datasets.Dataset.from_list(rows)
    quiet = not datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()  # one bar per rank, not one per chunk
    try:
        out, failures = _tokenize_shard(chunk, feature_extractor, audio_column_name, batch_size, True, None, members)
    finally:
        if not quiet:
            datasets_logging.enable_progress_bar()
    table = out.remove_columns(["source_file", KEY]).data.table
    by_member = {m: r for m, r in zip(members, rows)}
    failures = [
        {"shard": by_member[f["audio"]]["source_shard"], "key": by_member[f["audio"]][KEY], "error": f["error"]}
        for f in failures
    ]
    return table, failures


def _write_atomic(path, write) -> None:
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.path.basename(path)}")
    write(tmp)
    os.replace(tmp, path)


def _write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)

    _write_atomic(path, write)


def _read_json(path, default=None):
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def _input_size(url: str) -> int | None:
    """The byte size of an input shard (None for a dataset shard or where the filesystem does not say)."""
    if "://" not in url and not os.path.exists(url):
        return None
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
        return fs.info(path).get("size")
    except Exception:  # noqa: BLE001 - the size is a check, not a requirement
        return None


def _shard_file(i: int, n: int) -> str:
    return f"codes-{i:05d}-of-{n:05d}"


def _tokenize_one(rows, record_path, arrow_path, record, feature_extractor, audio_column_name, batch_size, progress):
    """Encodes the rows of one input shard into `arrow_path` and writes its record; returns the record."""
    import pyarrow as pa

    tables, failures = [], []
    for chunk, bad in _chunks(rows, SAMPLES_PER_CHUNK):
        failures += bad
        if chunk:
            table, bad = _encode_rows(chunk, feature_extractor, audio_column_name, batch_size)
            tables.append(table)
            failures += bad
        if progress is not None:
            progress.update(len(chunk))
    tables = [t for t in tables if t.num_rows]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    frames = int(np.sum(table.column("length").to_numpy() - 2)) if table is not None else 0
    if table is not None:

        def write(tmp):
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)

        _write_atomic(arrow_path, write)
    record = dict(
        record,
        file=os.path.basename(arrow_path) if table is not None else None,
        rows=table.num_rows if table is not None else 0,
        seconds=frames * feature_extractor.hop_length / feature_extractor.sampling_rate,
        failures=failures,
    )
    _write_json(record_path, record)
    return record


def _is_finished(record_path, arrow_path, input_url, input_size, codec_sha256) -> bool:
    record = _read_json(record_path)
    return (
        record is not None
        and record.get("input") == input_url
        and record.get("input_size") == input_size
        and record.get("codec_sha256") == codec_sha256
        and (record["rows"] == 0 or os.path.isfile(arrow_path))
    )


def _progress(state, total_shards, show):
    """A per-rank bar over clips; its total is re-estimated after each shard from the clips per shard so far, so
    its rate (clips/s) and ETA cover all of this rank's shards."""
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=None,
        unit="clip",
        desc=f"rank {state.process_index}: 0/{total_shards} shards",
        position=state.process_index,
    )


def _gather(state, obj) -> list:
    import torch

    if state.num_processes > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        out = [None] * state.num_processes
        torch.distributed.all_gather_object(out, obj)
        return out
    return [obj]


def _made_with(feature_extractor, audio_column_name, label_column_name) -> dict:
    from .tokenize_dataset import codec_digest

    made_with = {
        "feature_extractor": {
            k: v for k, v in feature_extractor.to_dict().items() if k not in ("codec_name_or_path", "codec_batch_size")
        },
        "codec_name_or_path": feature_extractor.codec_name_or_path,
        "codec_sha256": codec_digest(feature_extractor),
        "audio_column_name": audio_column_name,
        "label_column_name": label_column_name,
    }
    return json.loads(json.dumps(made_with))


def _prepare_folder(output_dir, made_with, inputs, resume) -> None:
    """Rank 0: checks the folder is ours and made with the same codec (or clears it), writes the index's head."""
    from .tokenize_dataset import _settings_differences

    entries = [e for e in os.listdir(output_dir) if e != LOCK_FILE]
    index = _read_json(os.path.join(output_dir, INDEX_FILE))
    if entries and (index is None or index.get("format") != FORMAT):
        raise ValueError(
            f"{output_dir} is not empty ({', '.join(sorted(entries)[:5])}) and holds no {INDEX_FILE} of code shards: "
            "nothing is written there (nor deleted). Choose a new or empty folder."
        )
    if index is not None and (not resume or index["codec"] != made_with):
        if resume:
            raise ValueError(
                f"{output_dir} holds codes made with another codec or settings "
                f"({'; '.join(_settings_differences(index['codec'], made_with))}); use another output folder, or "
                "--overwrite_cache to tokenize again from scratch."
            )
        for entry in entries:
            path = os.path.join(output_dir, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    # Splits are tokenized by separate runs into one folder (train, then eval): the other splits are kept.
    index = index if index is not None and resume and os.path.isdir(output_dir) and entries else None
    splits = dict(index["splits"]) if index is not None else {}
    splits.update({split: {"inputs": urls, "complete": False} for split, urls in inputs.items()})
    _write_json(
        os.path.join(output_dir, INDEX_FILE),
        {"format": FORMAT, "codec": made_with, "complete": False, "splits": splits},
    )
    for split in inputs:
        os.makedirs(os.path.join(output_dir, split), exist_ok=True)


def pretokenize_shards(
    sources: dict,
    feature_extractor,
    output_dir,
    audio_column_name: str = "audio",
    label_column_name: str | None = None,
    batch_size: int = 8,
    resume: bool = True,
    show_progress: bool = True,
) -> dict:
    """
    Encodes every input shard of `sources` into one code shard each under `output_dir` (layout in the module
    docstring); each process takes its own shards, rank-strided. Works the same in one process and under
    `accelerate launch` (any number of machines; `output_dir` must be a folder every machine sees).

    Args:
        sources: {split: list of tar shard URLs} (`list_shards`), or {split: IterableDataset} (`--streaming`).
        label_column_name: json field (or cls / txt member) of tar samples to keep as this column; None: no labels.
        resume: reuse finished shards made from the same inputs with the same codec; False starts over.
    Returns:
        the summary of the run (clips, hours, wall seconds, real-time factor, failures), on every process.
    Raises:
        ValueError: another codec, a folder that is not a code-shard output, or no clip tokenized at all; raised
            on every process.
    """
    state = process_state()
    output_dir = os.fspath(output_dir)
    made_with = _made_with(feature_extractor, audio_column_name, label_column_name)
    inputs, shard_rows = {}, {}
    for split, source in sources.items():
        if isinstance(source, datasets.IterableDataset):
            if isinstance(source.features and source.features.get(audio_column_name), datasets.Audio):
                source = source.cast_column(audio_column_name, datasets.Audio(decode=False))
            n = source.num_shards
            inputs[split] = [f"{split}:shard-{i}-of-{n}" for i in range(n)]
            shard_rows[split] = lambda i, s=source, n=n, sp=split: stream_shard_rows(
                s.shard(num_shards=n, index=i), f"{sp}:shard-{i}-of-{n}", audio_column_name
            )
        else:
            inputs[split] = list(source)
            shard_rows[split] = lambda i, u=inputs[split]: tar_shard_rows(u[i], label_column_name)

    lock = claim_output_folder(output_dir, state)
    try:
        error = None
        try:
            if state.is_main_process:
                _prepare_folder(output_dir, made_with, inputs, resume)
        except Exception as err:  # shared, so that no process waits for the others forever
            error = err
        wait_for_everyone_or_raise(state, error)
        return _run(inputs, shard_rows, feature_extractor, output_dir, made_with, batch_size, show_progress, state)
    finally:
        if lock is not None:
            lock.release()


def _run(inputs, shard_rows, feature_extractor, output_dir, made_with, batch_size, show_progress, state):
    audio_column_name = made_with["audio_column_name"]
    work = [
        (split, i)
        for split, urls in inputs.items()
        for i in range(len(urls))
        if i % state.num_processes == state.process_index
    ]
    error, clips, seconds, failed, start = None, 0, 0.0, 0, time.perf_counter()
    heartbeat = _start_heartbeat(output_dir, state)
    progress = _progress(state, len(work), show_progress)
    try:
        done = 0
        for split, i in work:
            url, n = inputs[split][i], len(inputs[split])
            base = os.path.join(output_dir, split, _shard_file(i, n))
            size = _input_size(url)
            if not _is_finished(f"{base}.json", f"{base}.arrow", url, size, made_with["codec_sha256"]):
                record = {"input": url, "input_size": size, "codec_sha256": made_with["codec_sha256"]}
                record["process"] = state.process_index
                record = _tokenize_one(
                    shard_rows[split](i),
                    f"{base}.json",
                    f"{base}.arrow",
                    record,
                    feature_extractor,
                    audio_column_name,
                    batch_size,
                    progress,
                )
                clips += record["rows"]
                seconds += record["seconds"]
                failed += len(record["failures"])
            done += 1
            if progress is not None:
                progress.set_description(f"rank {state.process_index}: {done}/{len(work)} shards")
                if clips:  # estimated total: the clips per shard so far times this rank's shards
                    progress.total = max(progress.n, round(progress.n / done * len(work)))
                progress.refresh()
        if progress is not None:
            progress.close()
    except Exception as err:
        error = err
        _write_json(os.path.join(output_dir, HEARTBEAT_DIR, f"{state.process_index}.failed"), repr(err))
    wall = time.perf_counter() - start
    if error is None and state.num_processes > 1:
        _wait_for_other_shards(output_dir, inputs, made_with["codec_sha256"], state)
    heartbeat.set()
    wait_for_everyone_or_raise(state, error)
    per_rank = _gather(state, {"clips": clips, "seconds": seconds, "failures": failed, "wall_s": wall})

    summary = None
    try:
        if state.is_main_process:
            summary = _finish_index(output_dir, inputs, per_rank)
    except Exception as err:
        error = err
    wait_for_everyone_or_raise(state, error)
    return _gather(state, summary)[0]


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a process counts as dead: $AUDIOFORMER_HEARTBEAT_TIMEOUT, default
    600."""
    return float(os.environ.get("AUDIOFORMER_HEARTBEAT_TIMEOUT", 600))


def _start_heartbeat(output_dir, state):
    """Touches output_dir/.heartbeat/<rank> every timeout / 4 seconds in a daemon thread, until the returned event
    is set. The others watch it while they wait for this rank's shards (`_wait_for_other_shards`)."""
    import threading

    folder = os.path.join(output_dir, HEARTBEAT_DIR)
    os.makedirs(folder, exist_ok=True)
    for stale in (f"{state.process_index}.failed",):
        if os.path.exists(os.path.join(folder, stale)):
            os.remove(os.path.join(folder, stale))
    path, stop = os.path.join(folder, str(state.process_index)), threading.Event()

    def beat():
        while True:
            with open(path, "w") as f:
                f.write(str(time.time()))
            if stop.wait(heartbeat_timeout() / 4):
                return

    threading.Thread(target=beat, daemon=True, name="audioformer-heartbeat").start()
    return stop


def _wait_for_other_shards(output_dir, inputs, codec_sha256, state) -> None:
    """Waits, polling the shared folder, until every shard has its record; a process whose heartbeat stopped for
    `heartbeat_timeout()` seconds (killed, its machine lost) raises a RuntimeError naming it, instead of waiting in
    a collective until torch.distributed's timeout (30 min by default, and then for every legitimately slow rank
    too). Returns at once if a process recorded a failure: the collective that follows shares its error."""
    folder, timeout = os.path.join(output_dir, HEARTBEAT_DIR), heartbeat_timeout()
    pending = {
        (split, i)
        for split, urls in inputs.items()
        for i in range(len(urls))
        if i % state.num_processes != state.process_index
    }
    since = time.time()
    while pending:
        if any(name.endswith(".failed") for name in os.listdir(folder)):
            return
        for split, i in sorted(pending):
            urls = inputs[split]
            record = _read_json(os.path.join(output_dir, split, f"{_shard_file(i, len(urls))}.json"))
            if record is not None and record.get("input") == urls[i] and record.get("codec_sha256") == codec_sha256:
                pending.discard((split, i))
        owners = sorted({i % state.num_processes for _, i in pending})
        for rank in owners:
            beat = os.path.join(folder, str(rank))
            last = max(os.path.getmtime(beat), since) if os.path.exists(beat) else since
            if time.time() - last > timeout:
                unfinished = sorted(i for _, i in pending if i % state.num_processes == rank)
                raise RuntimeError(
                    f"Process {rank} stopped: no heartbeat in {output_dir}/{HEARTBEAT_DIR}/{rank} for "
                    f"{time.time() - last:.0f} s (AUDIOFORMER_HEARTBEAT_TIMEOUT={timeout:g}); its shard(s) "
                    f"{unfinished[:5]} are unfinished. Rerun the same command on every machine: finished shards are "
                    "kept."
                )
        if pending:
            time.sleep(min(1.0, timeout / 10))


def _finish_index(output_dir, inputs, per_rank) -> dict:
    """Rank 0, once every shard is finished: the index (from the small per-shard records, not the codes), the
    failures report and the run's summary."""
    index = _read_json(os.path.join(output_dir, INDEX_FILE))
    report, total_rows = _read_json(os.path.join(output_dir, "failures.json"), default={}), 0
    for split, urls in inputs.items():
        report[split] = []
        shards = []
        for i in range(len(urls)):
            record = _read_json(os.path.join(output_dir, split, f"{_shard_file(i, len(urls))}.json"))
            shard = {k: record[k] for k in ("file", "input", "rows", "seconds")}
            shards.append(dict(shard, failures=len(record["failures"])))
            report[split].extend(record["failures"])
        rows = sum(s["rows"] for s in shards)
        total_rows += rows
        index["splits"][split] = {
            "inputs": urls,
            "shards": shards,
            "rows": rows,
            "seconds": sum(s["seconds"] for s in shards),
            "complete": True,
        }
    if total_rows == 0:
        first = [f for fs in report.values() for f in fs][:3]
        raise ValueError(
            f"No clip could be tokenized into {output_dir}; first failures: "
            + "; ".join(f"{f['shard']} {f['key']}: {f['error']}" for f in first)
        )
    clips = sum(r["clips"] for r in per_rank)
    seconds = sum(r["seconds"] for r in per_rank)
    wall = max(r["wall_s"] for r in per_rank)
    summary = {
        "processes": len(per_rank),
        "clips": clips,
        "hours": seconds / 3600,
        "wall_s": wall,
        "clips_per_s": clips / wall if wall > 0 else None,
        # processing time over audio time, for the whole job (all processes at once): < 1 is faster than real time
        "real_time_factor": wall / seconds if seconds > 0 else None,
        "failures": sum(r["failures"] for r in per_rank),
        "rows_in_folder": sum(info.get("rows", 0) for info in index["splits"].values()),
        "failures_in_folder": sum(len(fs) for fs in report.values()),
    }
    index.update(complete=all(info.get("complete") for info in index["splits"].values()), summary=summary)
    _write_json(os.path.join(output_dir, "failures.json"), report)
    _write_json(os.path.join(output_dir, INDEX_FILE), index)
    logger.info(
        "tokenized %d clips (%.2f h of audio) in %.1f s on %d process(es): %.1f clips/s, real-time factor %.4f; "
        "%d failure(s) this run, %d in %s",
        clips,
        seconds / 3600,
        wall,
        len(per_rank),
        summary["clips_per_s"] or 0,
        summary["real_time_factor"] or 0,
        summary["failures"],
        summary["failures_in_folder"],
        os.path.join(output_dir, "failures.json"),
    )
    return summary


def uses_shards(data_args) -> bool:
    """Whether the data flags name tar shards (--data_files without --dataset_name) or a streamed dataset."""
    return data_args.streaming or (data_args.data_files is not None and data_args.dataset_name is None)


def shard_sources(data_args, codec_args, split_name: str = "train") -> dict:
    """The input shards the data flags name, as `pretokenize_shards` takes them: {split_name: tar shard URLs} for
    --data_files, or {split: IterableDataset} for --streaming (--dataset_name / --data_dir / --data_files as
    `datasets.load_dataset` takes them)."""
    if data_args.dataset_name is None and data_args.data_dir is None:
        return {split_name: list_shards(data_args.data_files)}
    if not data_args.streaming:
        raise ValueError("--data_files with --dataset_name / --data_dir: add --streaming (or drop --data_files).")
    kwargs = {"data_dir": data_args.data_dir, "data_files": data_args.data_files}
    streamed = datasets.load_dataset(
        data_args.dataset_name or "audiofolder",
        data_args.dataset_config_name,
        streaming=True,
        cache_dir=codec_args.cache_dir,
        token=codec_args.token,
        **{k: v for k, v in kwargs.items() if v is not None},
    )
    return dict(streamed) if isinstance(streamed, datasets.IterableDatasetDict) else {split_name: streamed}


def is_code_shards(path) -> bool:
    """Whether `path` is an output of `pretokenize_shards` (holds its index.json)."""
    index = _read_json(os.path.join(os.fspath(path), INDEX_FILE))
    return index is not None and index.get("format") == FORMAT


def load_code_shards(path) -> datasets.DatasetDict:
    """A `pretokenize_shards` output as a DatasetDict, one split per folder, each the concatenation of its shards'
    memory-mapped Arrow files (no data is copied or read). Raises a ValueError if the run did not finish."""
    path = os.fspath(path)
    index = _read_json(os.path.join(path, INDEX_FILE))
    unfinished = [split for split, info in index["splits"].items() if not info.get("complete")]
    if unfinished:
        raise ValueError(
            f"{path} is unfinished (split(s) {unfinished}): rerun the pre-tokenizer with the same arguments to "
            "finish it."
        )
    out = datasets.DatasetDict()
    for split, info in index["splits"].items():
        parts = [datasets.Dataset.from_file(os.path.join(path, split, s["file"])) for s in info["shards"] if s["rows"]]
        out[split] = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return out


def read_index(path) -> dict | None:
    return _read_json(os.path.join(os.fspath(path), INDEX_FILE))


__all__ = [
    "expand_braces",
    "list_shards",
    "iter_tar_samples",
    "pretokenize_shards",
    "is_code_shards",
    "load_code_shards",
    "read_index",
]
