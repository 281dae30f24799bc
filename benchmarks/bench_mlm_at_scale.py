"""
run_mlm.py on a code dataset of AudioSet-2M's size: start-up time, resident memory and data-loading throughput,
and how they grow with the number of rows.

1. Generates once, under `--root`, a synthetic code-shards folder (the layout of `tokenize_shards.py`) of
   `--rows` random clips (`--seconds` of codes each: `(4, seconds * 75 + 2)` int16 ids, 20,000 rows per Arrow
   shard) with the tiny test codec as its recorded codec, and a small folder holding only its first shard
   (20,000 rows, hard-linked: no copy). No audio.
2. For each folder: `run_mlm.py --tokenized_dataset DIR --do_train --max_steps N` (tiny model, batch 32, no
   dataloader workers) in a subprocess that records the time from process start to the first training step
   (start-up), the steps/s and clips/s after it (data loading + collator + a tiny model's step), and its resident
   memory split as Linux counts it: RssAnon (the process's own allocations) and RssFile (pages of the
   memory-mapped codes it touched: page cache, shared and reclaimable, growing with the rows read, not the rows
   held). USS would count those file pages too (they are mapped by this process only).
3. In this process, the data path alone: the DataLoader with run_mlm's collator over the whole folder, shuffled.

    python benchmarks/bench_mlm_at_scale.py --root /tmp/as2m-codes [--rows 2000000] [--seconds 10] [--steps 50]

The folder takes rows x 4 x (seconds x 75 + 2) x 2 bytes (12 GB for 2M rows of 10 s); it is reused when present.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


ROWS_PER_SHARD = 20_000
K = 4


def write_shard(path, first_row, rows, length, rng):
    import pyarrow as pa

    values = pa.array(rng.integers(3, 1027, size=rows * K * length, dtype=np.int16), pa.int16())
    inner = pa.array(np.arange(0, rows * K * length + 1, length, dtype=np.int32))
    outer = pa.array(np.arange(0, rows * K + 1, K, dtype=np.int32))
    input_ids = pa.ListArray.from_arrays(outer, pa.ListArray.from_arrays(inner, values))
    table = pa.table(
        {
            "id": pa.array([f"clip{first_row + i:07d}" for i in range(rows)]),
            "input_ids": input_ids,
            "length": pa.array(np.full(rows, length, dtype=np.int32)),
        }
    )
    tmp = f"{path}.tmp"
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1000)
    os.replace(tmp, path)


def generate(root, rows, seconds):
    """Writes root/full (rows) and root/small (its first shard) once; returns their paths."""
    from audioformer.tokenization import AudioFormerFeatureExtractor
    from audioformer.tokenization.tokenize_shards import FORMAT, _made_with
    from audioformer.training.tiny_codec import build_tiny_feature_extractor

    full, small = os.path.join(root, "full"), os.path.join(root, "small")
    if os.path.isfile(os.path.join(small, "index.json")):
        return full, small
    os.makedirs(os.path.join(full, "train"), exist_ok=True)
    os.makedirs(os.path.join(small, "train"), exist_ok=True)
    codec = os.path.join(root, "codec")
    build_tiny_feature_extractor(codec, seed=0, max_duration=seconds)
    fe = AudioFormerFeatureExtractor.from_pretrained(codec)
    made_with = _made_with(fe, "audio", None)
    length = int(round(seconds * 75)) + 2
    rng = np.random.default_rng(0)
    num = (rows + ROWS_PER_SHARD - 1) // ROWS_PER_SHARD
    shards = []
    start = time.perf_counter()
    for s in range(num):
        n = min(ROWS_PER_SHARD, rows - s * ROWS_PER_SHARD)
        name = f"codes-{s:05d}-of-{num:05d}.arrow"
        write_shard(os.path.join(full, "train", name), s * ROWS_PER_SHARD, n, length, rng)
        shards.append({"file": name, "input": f"synthetic-{s}", "rows": n, "seconds": n * seconds, "failures": 0})
    print(f"generated {rows} rows in {num} shards in {time.perf_counter() - start:.0f} s", flush=True)
    for folder, listed in ((full, shards), (small, shards[:1])):
        if folder == small:
            os.link(os.path.join(full, "train", shards[0]["file"]), os.path.join(small, "train", shards[0]["file"]))
        split = {"inputs": [s["input"] for s in listed], "shards": listed, "rows": sum(s["rows"] for s in listed)}
        split["complete"] = True
        index = {"format": FORMAT, "codec": made_with, "complete": True, "splits": {"train": split}}
        with open(os.path.join(folder, "index.json"), "w") as f:
            json.dump(index, f)
    return full, small


# Runs run_mlm.main in the child, timing from process start to the first and the last training step.
CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import transformers
stamps, memory = [], {}
def rss():  # anonymous (the process's own) and file-backed (memory-mapped codes, page cache) resident MiB
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Rss"))
    return {k: int(v.split()[0]) / 1024 for k, v in fields.items()}
real = transformers.Trainer.training_step
def timed(self, *args, **kwargs):
    out = real(self, *args, **kwargs)
    stamps.append(time.perf_counter() - t0)
    if len(stamps) == 1:
        memory["first_step"] = rss()
    return out
transformers.Trainer.training_step = timed
import run_mlm
run_mlm.main(sys.argv[2:])
memory["end"] = rss()
json.dump({"stamps": stamps, **memory}, open(sys.argv[1], "w"))
"""


def run_mlm(folder, out, steps, batch):
    args = ["--tokenized_dataset", folder, "--output_dir", out, "--do_train", "--max_steps", str(steps)]
    args += ["--config_overrides", "hidden_size=32,num_hidden_layers=1,num_attention_heads=4,intermediate_size=64"]
    args += ["--per_device_train_batch_size", str(batch), "--dataloader_num_workers", "0", "--use_cpu", "true"]
    args += ["--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]
    result_file = os.path.join(out + ".json")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, result_file, *args], cwd=repo, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(proc.stderr[-4000:])
    with open(result_file) as f:
        r = json.load(f)
    stamps = r["stamps"]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {"startup_s": stamps[0], "steps_per_s": rate, "clips_per_s": rate * batch, **r}


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("RssAnon"))


def data_path(folder, batches, batch):
    """In this process: the folder's load time and RssAnon growth, the max_position_embeddings check (one pass over
    `length`) against reading that column into a list, and the clips/s of the DataLoader with run_mlm's collator,
    shuffled over the whole folder."""
    import datasets
    import torch

    from audioformer.tokenization.tokenize_dataset import load_tokenized_dataset
    from audioformer.training.collators import DataCollatorForCodeMLM
    from audioformer.training.data import check_max_positions

    before = _rss_anon_mb()
    start = time.perf_counter()
    ds = load_tokenized_dataset(folder)["train"]
    load_s, load_anon = time.perf_counter() - start, _rss_anon_mb() - before
    start = time.perf_counter()
    check_max_positions(datasets.DatasetDict(train=ds), type("Config", (), {"max_position_embeddings": 1024}))
    check_s = time.perf_counter() - start
    start = time.perf_counter()
    max(ds["length"])  # what the check did before: the column as a Python list
    list_s = time.perf_counter() - start
    ds = ds.select_columns(["input_ids"])
    collator = DataCollatorForCodeMLM(codebook_index=0, pad_token_id=1, mask_token_id=1027)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=True, collate_fn=collator, generator=torch.Generator().manual_seed(0)
    )
    before = _rss_anon_mb()
    it = iter(loader)
    next(it)
    epoch_anon = _rss_anon_mb() - before
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return {
        "rows": len(ds),
        "load_s": load_s,
        "load_rss_anon_mb": load_anon,
        "check_max_positions_s": check_s,
        "length_column_as_list_s": list_s,
        "first_batch_rss_anon_mb": epoch_anon,
        "clips_per_s": batches * batch / (time.perf_counter() - start),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    print("command:", " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]), flush=True)
    import torch

    torch.set_num_threads(1)
    full, small = generate(args.root, args.rows, args.seconds)
    results = {}
    for name, folder in (("small", small), ("full", full)):
        out = os.path.join(args.root, f"run-{name}")
        results[name] = {"run_mlm": run_mlm(folder, out, args.steps, args.batch)}
        results[name]["data"] = data_path(folder, args.steps, args.batch)
        print(name, json.dumps(results[name]), flush=True)
    print(f"\n{args.seconds:g} s clips ({int(round(args.seconds * 75)) + 2} ids per codebook row), batch {args.batch}")
    print(
        "| rows | run_mlm start-up to step 1 (s) | run_mlm clips/s | RssAnon / RssFile at step 1 (MiB) | "
        "RssAnon / RssFile at end (MiB) | folder load (s) | DataLoader clips/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ("small", "full"):
        r, d = results[name]["run_mlm"], results[name]["data"]
        first, end = r["first_step"], r["end"]
        print(
            f"| {d['rows']:,} | {r['startup_s']:.1f} | {r['clips_per_s']:.1f} | {first['RssAnon']:.0f} / "
            f"{first['RssFile']:.0f} | {end['RssAnon']:.0f} / {end['RssFile']:.0f} | {d['load_s']:.2f} | "
            f"{d['clips_per_s']:.0f} |"
        )
    print(
        "\n| rows | folder load: RssAnon + (MiB) | first batch: RssAnon + (MiB) | length check (s) "
        "| length as a list (s) |"
    )
    print("|---|---|---|---|---|")
    for name in ("small", "full"):
        d = results[name]["data"]
        print(
            f"| {d['rows']:,} | {d['load_rss_anon_mb']:.0f} | {d['first_batch_rss_anon_mb']:.0f} | "
            f"{d['check_max_positions_s']:.3f} | {d['length_column_as_list_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
