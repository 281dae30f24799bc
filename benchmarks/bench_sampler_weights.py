"""
The weighted sampler's weights (`training/sampling.inverse_frequency_weights`) for AudioSet-2M-sized label columns:
from the Arrow column (what run_classification.py passes now) against the Python lists `ds["label_ids"]` gives.

Random multi-label rows (1-4 of 527 classes, AudioSet's label count), held as a `datasets.Dataset`; times include
reading the column either way. Same weights checked.

    python benchmarks/bench_sampler_weights.py [--rows 2000000]
"""

import argparse
import sys
import time

import datasets
import numpy as np
import pyarrow as pa

from audioformer.training.sampling import inverse_frequency_weights


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000)
    args = p.parse_args()
    print("command:", " ".join(["python", "benchmarks/bench_sampler_weights.py", *sys.argv[1:]]))
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 5, size=args.rows)
    values = rng.integers(0, 527, size=int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    ds = datasets.Dataset(pa.table({"label_ids": column}))

    start = time.perf_counter()
    arrow = inverse_frequency_weights(
        ds.select_columns(["label_ids"]).with_format("arrow")[:].column("label_ids"), 527
    )
    arrow_s = time.perf_counter() - start
    start = time.perf_counter()
    lists = inverse_frequency_weights(ds["label_ids"], 527)
    lists_s = time.perf_counter() - start
    same = np.allclose(arrow, lists, rtol=1e-12, atol=0)
    print(
        f"{args.rows:,} rows: Arrow column {arrow_s:.2f} s, Python lists {lists_s:.2f} s "
        f"({lists_s / arrow_s:.0f}x); same: {same}"
    )


if __name__ == "__main__":
    main()
