"""
K-fold cross-validation (ESC-50's 5 folds): the folds of one dataset as code datasets, and the summary over folds.

For fold `k` the clips of fold `k` are the test split, the others the training split; within the training split
`run_classification.py` holds out `--validation_split_percentage` (seeded) for early stopping and the best
checkpoint, so the test fold is evaluated once, with the selected model. The literature reports the mean and the
standard deviation of the test accuracy over the folds.

    codes = ...                                                 # every clip's codes, with a "fold" column
    path = write_fold(codes, "fold", "3", "out/folds/fold_3")   # DatasetDict {"train", "test"} on disk
    summary = summarize({"1": {"test_accuracy": 0.9}, ...})     # mean and std per test metric
"""

import json
import math
import os
from dataclasses import dataclass, field

import datasets
import numpy as np


@dataclass
class CrossValidationArguments:
    """Which column holds the fold of each clip, and which folds to run."""

    fold_column: str = field(default="fold", metadata={"help": "Column holding each clip's fold (ESC-50: fold)."})
    folds: list[str] | None = field(
        default=None, metadata={"help": "Folds to run, each once as the test split (default: every fold)."}
    )


def fold_names(dataset: datasets.Dataset, fold_column: str, folds: list[str] | None = None) -> list[str]:
    """The folds to run, as strings: `folds`, checked against the column, or every value of it in order."""
    if fold_column not in dataset.column_names:
        raise ValueError(
            f"No fold column {fold_column!r} in the data (columns: {dataset.column_names}); set --fold_column."
        )
    present = sorted(
        {str(v) for v in dataset[fold_column]}, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else v)
    )
    if folds is None:
        folds = present
    missing = [f for f in folds if f not in present]
    if missing:
        raise ValueError(f"Fold(s) {missing} have no clip in column {fold_column!r} (folds: {present}).")
    if len(present) < 2:
        raise ValueError(f"Cross-validation needs at least 2 folds; column {fold_column!r} holds only {present}.")
    return list(folds)


def fold_splits(dataset: datasets.Dataset, fold_column: str, fold: str) -> datasets.DatasetDict:
    """`{"train": clips of the other folds, "test": clips of `fold`}`."""
    in_fold = np.array([str(v) == fold for v in dataset[fold_column]])
    return datasets.DatasetDict(
        {
            "train": dataset.select(np.flatnonzero(~in_fold)),
            "test": dataset.select(np.flatnonzero(in_fold)),
        }
    )


def write_fold(dataset: datasets.Dataset, fold_column: str, fold: str, path: str) -> str:
    """Writes `fold_splits` to `path` (a folder `run_classification.py --tokenized_dataset` reads); returns it."""
    fold_splits(dataset, fold_column, fold).save_to_disk(path)
    return path


def summarize(per_fold: dict[str, dict]) -> dict:
    """`{fold: all_results}` -> `{"folds": [...], "test_accuracy": {"mean", "std", "per_fold"}, ...}` for every
    finite `test_*` result (not runtimes). `std` is the sample standard deviation over folds (ddof=1)."""
    names = sorted(
        {
            k
            for results in per_fold.values()
            for k, v in results.items()
            if k.startswith("test_") and not k.endswith(("runtime", "per_second")) and isinstance(v, (int, float))
        }
    )
    summary = {"folds": list(per_fold)}
    for name in names:
        values = [float(per_fold[fold][name]) for fold in per_fold if name in per_fold[fold]]
        if len(values) != len(per_fold) or not all(math.isfinite(v) for v in values):
            continue
        std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        summary[name] = {"mean": float(np.mean(values)), "std": std, "per_fold": dict(zip(per_fold, values))}
    return summary


def write_summary(summary: dict, output_dir: str) -> str:
    path = os.path.join(output_dir, "cross_validation_results.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return path


def config_to_argv(config: dict) -> list[str]:
    """A recipe dict (JSON / YAML) -> command-line flags, for a run that adds or overrides some of them."""
    argv = []
    for key, value in config.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, bool):
            argv += [f"--{key}", str(value).lower()]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def without_flags(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`argv` without the single-valued flags `names` (as `--name value` or `--name=value`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in names:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


__all__ = [
    "CrossValidationArguments",
    "fold_names",
    "fold_splits",
    "write_fold",
    "summarize",
    "write_summary",
    "config_to_argv",
    "without_flags",
]
