#!/usr/bin/env python
"""
K-fold cross-validation with run_classification.py, in one command (ESC-50: 5 folds, mean and standard deviation of
the test accuracy, as the literature reports it).

    python run_cross_validation.py configs/ft_esc50_ft1.yaml
    python run_cross_validation.py --train_file data/esc50/esc50.csv --audio_column_name filename \
        --label_column_name category --fold_column fold --model_name_or_path outputs/audioformer-mlm-c1 \
        --max_duration 5 --do_train --do_eval --output_dir outputs/esc50 ...   # any run_classification flag

Every clip is tokenized once. Run k tests on fold k and trains on the others, selecting (early stopping, best
checkpoint) on a seeded hold-out of --validation_split_percentage of its training folds; the test fold is evaluated
once, at the end. Writes OUTPUT_DIR/fold_<k>/ (a complete run_classification output folder per fold) and
OUTPUT_DIR/cross_validation_results.json (mean, standard deviation and per-fold value of each test metric).
Runs in one process (`python`, not `accelerate launch`).
"""

import dataclasses
import logging
import os
import sys

from transformers import HfArgumentParser

import run_classification
from audioformer.training.arguments import parse_args
from audioformer.training.cross_validation import (
    CrossValidationArguments,
    config_to_argv,
    fold_names,
    summarize,
    without_flags,
    write_fold,
    write_summary,
)
from audioformer.training.data import prepare_code_datasets
from audioformer.training.labels import LabelSpace


logger = logging.getLogger(__name__)

# Flags the runner sets for each fold (the data source becomes the fold's codes).
PER_FOLD_FLAGS = (
    "--dataset_name",
    "--dataset_config_name",
    "--data_dir",
    "--train_file",
    "--validation_file",
    "--tokenized_dataset",
    "--tokenized_cache_dir",
    "--train_split_name",
    "--eval_split_name",
    "--test_split_name",
    "--test_file",
    "--feature_extractor_name",
    "--output_dir",
)


def read_argv(argv: list[str]) -> list[str]:
    """A recipe file (.json / .yaml) as the first argument becomes flags; flags after it override it."""
    if argv and argv[0].endswith((".json", ".yaml", ".yml")):
        import json

        import yaml

        with open(argv[0]) as f:
            recipe = json.load(f) if argv[0].endswith(".json") else yaml.safe_load(f)
        return config_to_argv(recipe) + argv[1:]
    return argv


def main(argv: list[str] | None = None) -> dict:
    argv = read_argv(sys.argv[1:] if argv is None else list(argv))
    cv_args, rest = HfArgumentParser(CrossValidationArguments).parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    model_args, data_args, cls_args, eval_args, training_args = parse_args(run_classification.argument_parser(), rest)
    if eval_args.has_test:
        raise ValueError("Cross-validation makes each fold the test split: drop --test_split_name / --test_file.")
    if training_args.world_size > 1:
        raise ValueError("Run the cross-validation in one process (python run_cross_validation.py ...).")
    root = training_args.output_dir

    # 1. Every clip's codes, once, checked before tokenizing: the fold column, the folds, the labels.
    def check(splits):
        fold_names(splits["train"], cv_args.fold_column, cv_args.folds)
        LabelSpace.from_datasets(splits, cls_args.label_column_name).resolve_loss(cls_args.loss)

    all_clips = dataclasses.replace(data_args, max_train_samples=None)
    codes, feature_extractor = prepare_code_datasets(
        model_args, all_clips, training_args, need_train=True, need_eval=False, check_splits=check
    )
    folds = fold_names(codes["train"], cv_args.fold_column, cv_args.folds)
    feature_extractor_dir = os.path.join(root, "feature_extractor")
    feature_extractor.save_pretrained(feature_extractor_dir)

    # 2. One run_classification run per fold, on that fold's codes.
    per_fold = {}
    for fold in folds:
        fold_codes = write_fold(codes["train"], cv_args.fold_column, fold, os.path.join(root, "fold_codes", fold))
        logger.info("Fold %s of %s: test on fold %s, train on the others", fold, folds, fold)
        per_fold[fold] = run_classification.main(
            without_flags(rest, PER_FOLD_FLAGS)
            + ["--tokenized_dataset", fold_codes, "--feature_extractor_name", feature_extractor_dir]
            + ["--test_split_name", "test", "--output_dir", os.path.join(root, f"fold_{fold}")]
        )

    # 3. Mean and standard deviation over the folds.
    summary = summarize(per_fold)
    path = write_summary(summary, root)
    for name, values in summary.items():
        if name != "folds":
            print(
                f"[CV] {name} = {values['mean']:.4f} +- {values['std']:.4f} (mean +- sample std over "
                f"{len(folds)} folds); per fold: {values['per_fold']}"
            )
    logger.info("Cross-validation results in %s", path)
    return summary


if __name__ == "__main__":
    main()
