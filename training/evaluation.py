"""
The evaluation protocol of `run_classification.py`: select on a validation split, test once on a test split.

    validation   early stopping, the best checkpoint (`--load_best_model_at_end`) and, for multi-label models, the
                 per-class decision thresholds are chosen here: `--eval_split_name`, or, when the data has no such
                 split, a seeded hold-out of `--validation_split_percentage` of the training split.
    test         `--test_split_name` (or `--test_file`): never looked at while training; evaluated once at the end
                 with the selected model (and its thresholds), reported as `test_*` metrics.

    eval_args = EvaluationArguments(test_split_name="eval")
    test_codes = prepare_test_dataset(model_args, data_args, training_args, eval_args, check_splits)
    thresholds = calibrate_if_needed(trainer, code_datasets, eval_args, training_args)   # after training
"""

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field

from .arguments import DataTrainingArguments
from .data import prepare_code_datasets
from .metrics import calibrate_thresholds, keep_logits


logger = logging.getLogger(__name__)


@dataclass
class EvaluationArguments:
    """Where the test split comes from, and whether multi-label decision thresholds are calibrated."""

    test_split_name: str | None = field(
        default=None,
        metadata={
            "help": "Split of the source evaluated once at the end, with the model selected on the validation split "
            "(e.g. AudioSet's 'eval', FSD50K's 'test'). Reported as test_* metrics."
        },
    )
    test_file: str | None = field(
        default=None, metadata={"help": "CSV / JSON-lines test file (with --train_file / --validation_file data)."}
    )
    max_test_samples: int | None = field(default=None, metadata={"help": "Use only this many test clips."})
    calibrate_thresholds: bool = field(
        default=True,
        metadata={
            "help": "Multi-label: fit a decision threshold per class on the validation split and fold it into the "
            "classifier's bias (recorded in config.json as decision_thresholds), so F1 metrics and any pipeline's "
            "sigmoid scores are at the threshold at 0.5. Needed for LSEP, "
            "whose logits have no absolute scale."
        },
    )

    def __post_init__(self):
        if self.test_split_name is not None and self.test_file is not None:
            raise ValueError("Pass --test_split_name or --test_file, not both.")
        if self.max_test_samples is not None and self.max_test_samples < 1:
            raise ValueError(f"--max_test_samples must be >= 1, got {self.max_test_samples}.")

    @property
    def has_test(self) -> bool:
        return self.test_split_name is not None or self.test_file is not None


def check_test_source(data_args: DataTrainingArguments, eval_args: EvaluationArguments) -> None:
    """Raises a ValueError when the test split is the validation split (selection on the test set) or cannot come
    from the data source."""
    if eval_args.test_file is not None and data_args.train_file is None and data_args.validation_file is None:
        raise ValueError("--test_file goes with --train_file / --validation_file data; name a split instead.")
    if eval_args.test_split_name is not None:
        if eval_args.test_split_name == data_args.eval_split_name:
            raise ValueError(
                f"--test_split_name and --eval_split_name are both '{data_args.eval_split_name}': the model would be "
                "selected on its test split. Name another validation split, or one the data lacks to hold out "
                "--validation_split_percentage of the training split."
            )
        if eval_args.test_split_name == data_args.train_split_name:
            raise ValueError(f"--test_split_name is the training split '{data_args.train_split_name}'.")
    if eval_args.test_file is not None and eval_args.test_file in (data_args.train_file, data_args.validation_file):
        raise ValueError(f"--test_file {eval_args.test_file} is also the training or validation file.")


def prepare_test_dataset(model_args, data_args, training_args, eval_args: EvaluationArguments, check_splits=None):
    """
    The test split as code ids (raw audio tokenized once and cached, like the other splits), checked before any
    training: `prepare_code_datasets` run for that split alone, as if it were the evaluation split.

    Returns:
        a `datasets.Dataset` with `input_ids`, `length` and the source's other columns.
    """
    check_test_source(data_args, eval_args)
    changes = dict(validation_split_percentage=0, max_eval_samples=eval_args.max_test_samples)
    if eval_args.test_file is not None:
        changes.update(train_file=None, validation_file=eval_args.test_file, eval_split_name="validation")
    else:
        changes.update(eval_split_name=eval_args.test_split_name)
    if data_args.tokenized_cache_dir is not None:  # a folder of its own: the cache holds one set of splits
        changes["tokenized_cache_dir"] = os.path.join(data_args.tokenized_cache_dir, "test_split")
    test_args = dataclasses.replace(data_args, **changes)
    try:
        splits, _ = prepare_code_datasets(
            model_args, test_args, training_args, need_train=False, need_eval=True, check_splits=check_splits
        )
    except ValueError as err:
        raise ValueError(f"Test split (--test_split_name / --test_file): {err}") from err
    return splits["validation"]


def source_has_split(data_args: DataTrainingArguments, split: str) -> bool | None:
    """Whether the data source has a split named `split` (None when that cannot be told without loading it)."""
    if data_args.tokenized_dataset is not None:
        path = os.path.join(data_args.tokenized_dataset, "dataset_dict.json")
        if not os.path.isfile(path):
            return False
        with open(path) as f:
            return split in json.load(f).get("splits", [])
    if data_args.dataset_name in (None, "audiofolder") and data_args.data_dir is not None:
        return os.path.isdir(os.path.join(data_args.data_dir, split))
    if data_args.train_file is not None or data_args.validation_file is not None:
        return split == "validation" and data_args.validation_file is not None
    return None


def split_names(data_args: DataTrainingArguments, training_args, eval_args: EvaluationArguments) -> dict[str, str]:
    """What the `eval_*` and `test_*` metrics were measured on, for the logs and the model card's `model-index`:
    `{"eval": "validation" | "train (5% seeded hold-out, seed 42)", "test": "eval"}`."""
    has_eval = source_has_split(data_args, data_args.eval_split_name)
    if has_eval:
        validation = data_args.eval_split_name
    else:
        validation = (
            f"{data_args.train_split_name} ({data_args.validation_split_percentage}% seeded hold-out, "
            f"seed {training_args.seed})"
        )
        if has_eval is None:
            validation = f"{data_args.eval_split_name} (or, if absent, {validation})"
    names = {"eval": validation}
    if eval_args.test_split_name is not None:
        names["test"] = eval_args.test_split_name
    elif eval_args.test_file is not None:
        names["test"] = os.path.basename(eval_args.test_file)
    return names


def calibrate_decision_thresholds(trainer, validation_dataset) -> list[float]:
    """
    Predicts the validation split with the trainer's (selected) model and fits one decision threshold per class
    (`training.metrics.calibrate_thresholds`); the same on every process, since predictions are gathered.

    Returns:
        `(C,)` thresholds in logit units, as floats for `config.decision_thresholds`.
    """
    prediction = trainer.predict(validation_dataset, metric_key_prefix="calibration")
    thresholds = calibrate_thresholds(keep_logits(prediction.predictions), prediction.label_ids)
    logger.info(
        "Decision thresholds calibrated on the validation split (%d clips): logits from %.3g to %.3g",
        len(validation_dataset),
        thresholds.min(),
        thresholds.max(),
    )
    return [float(t) for t in thresholds]


def initial_thresholds(config):
    """The F1 metrics' thresholds until calibrated: logit 0 for a calibrated checkpoint (its thresholds are folded
    into the classifier's bias) and for a BCE model (probability 0.5), else none (an LSEP model's logits have no
    absolute scale, so no F1 until calibrated)."""
    if config.problem_type != "multi_label_classification":
        return None
    if config.decision_thresholds is not None:
        return 0.0  # calibrated: the thresholds are folded into the classifier's bias
    return 0.0 if config.multi_label_loss == "bce" else None


def calibrate_if_needed(trainer, code_datasets, eval_args: EvaluationArguments, training_args) -> list[float] | None:
    """
    After training (with the selected model): fits the multi-label decision thresholds on the validation split and
    folds them into the classifier's bias (`fold_decision_thresholds`, recorded as `decision_thresholds` in
    config.json), so logit 0 is each class's threshold from then on. An evaluation-only run keeps a calibrated
    checkpoint as it is. Returns the thresholds, or None when none were fitted (with a warning saying why).
    """
    config = trainer.model.config
    if not eval_args.calibrate_thresholds or (not training_args.do_train and config.decision_thresholds is not None):
        return None
    if "validation" not in code_datasets:
        logger.warning(
            "No validation split (--do_eval is off): the multi-label decision thresholds are not calibrated%s.",
            "; an LSEP model's scores then have no absolute scale" if config.multi_label_loss == "lsep" else "",
        )
        return None
    if not any(len(row) for row in code_datasets["validation"]["label_ids"]):
        logger.warning("The validation split has no positive label: decision thresholds cannot be calibrated.")
        return None
    thresholds = calibrate_decision_thresholds(trainer, code_datasets["validation"])
    trainer.accelerator.unwrap_model(trainer.model).fold_decision_thresholds(thresholds)
    logger.info(
        "Decision thresholds folded into the classifier's bias (recorded in config.json); eval_*_f1 are measured on "
        "the split they were fitted on."
    )
    return thresholds


__all__ = [
    "EvaluationArguments",
    "check_test_source",
    "prepare_test_dataset",
    "source_has_split",
    "split_names",
    "calibrate_decision_thresholds",
    "calibrate_if_needed",
    "initial_thresholds",
]
