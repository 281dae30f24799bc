"""Local `evaluate` modules (loaded by path, so they work offline): `mean_average_precision`, `multilabel_f1`,
`accuracy`; and per-class decision thresholds calibrated on a validation split (`thresholds.py`).

    from audioformer.training.metrics import load_metric
    load_metric("mean_average_precision").compute(predictions=scores, references=multi_hot)

    compute_metrics = ClassificationMetrics(multi_label=True, id2label=config.id2label)   # for Trainer
    compute_metrics.thresholds = calibrate_thresholds(validation_logits, validation_multi_hot)  # F1 from now on
"""

import math
import os

import numpy as np

from .thresholds import best_f1_threshold, calibrate_thresholds


METRICS_DIR = os.path.dirname(os.path.abspath(__file__))
METRIC_NAMES = ("mean_average_precision", "multilabel_f1", "accuracy")


def load_metric(name: str):
    """Loads one of `METRIC_NAMES` with `evaluate.load` from its folder here (in memory: no cache files, so
    several processes can compute at once)."""
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; the local metrics are {METRIC_NAMES}.")
    return evaluate.load(os.path.join(METRICS_DIR, name), keep_in_memory=True)


def keep_logits(logits, labels=None):
    """`preprocess_logits_for_metrics`: the classifier also returns `pooled_output`; keep only the logits."""
    return logits[0] if isinstance(logits, tuple) else logits


class ClassificationMetrics:
    """
    `compute_metrics` for the Trainer (with `preprocess_logits_for_metrics=keep_logits`): {"accuracy"} for
    single-label, {"mAP"} for multi-label, plus {"micro_f1", "macro_f1"} once there are decision `thresholds`
    (a class counts as predicted when its logit is above its threshold). The Trainer reports them as eval_mAP,
    test_micro_f1, ... `per_class_ap` holds the per-class AP of the latest multi-label evaluation, by label name
    (for the model card).

    Args:
        thresholds: `(C,)` per-class thresholds in logit units (`calibrate_thresholds`, `config.decision_thresholds`),
            a single number for all classes (0 for a BCE model: probability 0.5), or None: no F1, which would be
            arbitrary for an LSEP model whose logits have no absolute scale.
    """

    def __init__(self, multi_label: bool, id2label: dict | None = None, thresholds=None):
        self.multi_label, self.id2label = multi_label, id2label or {}
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        self.per_class_ap: dict[str, float] | None = None
        if multi_label:
            self.map_metric, self.f1_metric = load_metric("mean_average_precision"), load_metric("multilabel_f1")
        else:
            self.accuracy_metric = load_metric("accuracy")

    def __call__(self, eval_pred) -> dict:
        logits, labels = keep_logits(eval_pred.predictions), eval_pred.label_ids
        if not self.multi_label:
            return self.accuracy_metric.compute(predictions=logits.argmax(-1), references=labels)
        references = (labels > 0.5).astype(np.int32)
        result = self.map_metric.compute(predictions=logits, references=references, return_per_class=True)
        per_class = result.pop("AP_per_class")
        self.per_class_ap = {self.id2label.get(i, str(i)): ap for i, ap in enumerate(per_class) if not math.isnan(ap)}
        if self.thresholds is not None:
            predicted = (logits > self.thresholds).astype(np.int32)
            result.update(self.f1_metric.compute(predictions=predicted, references=references))
        return result


__all__ = [
    "METRICS_DIR",
    "METRIC_NAMES",
    "load_metric",
    "keep_logits",
    "ClassificationMetrics",
    "best_f1_threshold",
    "calibrate_thresholds",
]
