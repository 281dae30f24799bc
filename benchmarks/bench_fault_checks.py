"""
What the integrity checks of docs/fault-tolerance.md cost on a large code dataset: the checksum written with a split,
its verification when the split is loaded, and the id range check, side by side with what loading the split costs
anyway (`datasets.load_from_disk`) and with reading its bytes once.

    python benchmarks/bench_fault_checks.py --rows 2000000 --folder /tmp/audioformer-2m-codes

The dataset is synthetic (random codes, every clip 10 s = 752 ids x 4 codebooks, int16, as AudioSet-2M's; no audio),
written once with Arrow record batches and reused by later runs. Timings depend on the disk and its page cache (the
first read comes from disk, later ones may come from memory): the script reports both a cold-ish first pass and a
second one, and the machine may be shared (noisy).
"""

import argparse
import json
import os
import time

import datasets
import numpy as np
import pyarrow as pa

from audioformer.tokenization.code_integrity import check_code_ids, checksum_problem, write_checksums


FRAMES, CODEBOOKS, BATCH_ROWS = 752, 4, 50_000


def write_synthetic(folder: str, rows: int, seed: int = 0) -> None:
    """A saved Dataset (`save_to_disk` layout: one arrow file, state.json, dataset_info.json) of `rows` clips."""
    os.makedirs(folder, exist_ok=True)
    features = datasets.Features(
        {"input_ids": datasets.Sequence(datasets.Sequence(datasets.Value("int16"))), "length": datasets.Value("int32")}
    )
    schema = features.arrow_schema
    rng = np.random.default_rng(seed)
    path = os.path.join(folder, "data-00000-of-00001.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, rows, BATCH_ROWS):
            n = min(BATCH_ROWS, rows - start)
            ids = rng.integers(3, 1027, size=(n * CODEBOOKS, FRAMES), dtype=np.int16)
            ids[:, 0], ids[:, -1] = 0, 2
            inner = pa.ListArray.from_arrays(
                pa.array(np.arange(n * CODEBOOKS + 1, dtype=np.int32) * FRAMES), pa.array(ids.reshape(-1))
            )
            outer = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * CODEBOOKS), inner)
            length = pa.array(np.full(n, FRAMES, dtype=np.int32))
            writer.write_batch(pa.record_batch([outer, length], schema=schema))
    with open(os.path.join(folder, "state.json"), "w") as f:
        json.dump({"_data_files": [{"filename": os.path.basename(path)}], "_fingerprint": f"synthetic-{rows}",
                   "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
                   "_split": None}, f)  # fmt: skip
    with open(os.path.join(folder, "dataset_info.json"), "w") as f:
        json.dump(datasets.DatasetInfo(features=features)._to_yaml_dict() | {"features": features.to_dict()}, f)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def read_all(path: str) -> int:
    total = 0
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            total += len(chunk)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--folder", default="/tmp/audioformer-2m-codes")
    args = parser.parse_args()
    print(f"python benchmarks/bench_fault_checks.py --rows {args.rows} --folder {args.folder}")
    if not os.path.isfile(os.path.join(args.folder, "state.json")):
        seconds, _ = timed(lambda: write_synthetic(args.folder, args.rows))
        print(f"wrote {args.rows} synthetic rows in {seconds:.1f} s")
    arrow = os.path.join(args.folder, "data-00000-of-00001.arrow")
    size = os.path.getsize(arrow)
    print(f"{args.rows} rows x {CODEBOOKS} codebooks x {FRAMES} ids: {size / 2**30:.2f} GiB of arrow")

    rows = []
    for attempt in ("first", "second"):
        read_s, _ = timed(lambda: read_all(arrow))
        load_s, ds = timed(lambda: datasets.load_from_disk(args.folder))
        write_s, _ = timed(lambda: write_checksums(args.folder))
        verify_s, problem = timed(lambda: checksum_problem(args.folder))
        assert problem is None, problem
        ids_s, _ = timed(lambda ds=ds: check_code_ids(ds, args.folder))
        rows.append((attempt, read_s, load_s, write_s, verify_s, ids_s))
    print("\npass    read once  load_from_disk  write checksums  verify checksums  id range check   (seconds)")
    for attempt, read_s, load_s, write_s, verify_s, ids_s in rows:
        print(f"{attempt:7s} {read_s:9.1f}  {load_s:14.1f}  {write_s:15.1f}  {verify_s:16.1f}  {ids_s:14.1f}")
    attempt, read_s, load_s, write_s, verify_s, ids_s = rows[-1]
    print(
        f"\nsecond pass: verify = {verify_s / read_s:.2f}x a plain read, id check = {ids_s / read_s:.2f}x a plain "
        f"read; both together {verify_s + ids_s:.1f} s at every load of the split ({size / 2**30 / verify_s:.2f} "
        "GiB/s XXH3-64)"
    )


if __name__ == "__main__":
    main()
