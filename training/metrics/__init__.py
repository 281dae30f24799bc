"""Local `evaluate` modules (loaded by path, so they work offline): `mean_average_precision`, `multilabel_f1`,
`accuracy`.

    from training.metrics import load_metric
    load_metric("mean_average_precision").compute(predictions=scores, references=multi_hot)

    compute_metrics = classification_compute_metrics(multi_label=True, id2label=config.id2label)   # for Trainer
"""

import math
import os

import numpy as np


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


def classification_compute_metrics(
    multi_label: bool, id2label: dict | None = None, threshold: float = 0.0, store: dict | None = None
):
    """
    `compute_metrics` for the Trainer (with `preprocess_logits_for_metrics=keep_logits`): {"mAP", "micro_f1",
    "macro_f1"} for multi-label (F1 counts logits above `threshold` as predicted) or {"accuracy"}; the Trainer
    reports them as eval_mAP / eval_accuracy. The per-class AP of the latest evaluation, by label name, is kept
    in `store["per_class_ap"]` (for the model card).
    """
    if multi_label:
        map_metric, f1_metric = load_metric("mean_average_precision"), load_metric("multilabel_f1")
    else:
        accuracy_metric = load_metric("accuracy")

    def compute_metrics(eval_pred):
        logits, labels = keep_logits(eval_pred.predictions), eval_pred.label_ids
        if not multi_label:
            return accuracy_metric.compute(predictions=logits.argmax(-1), references=labels)
        references = (labels > 0.5).astype(np.int32)
        result = map_metric.compute(predictions=logits, references=references, return_per_class=True)
        per_class = result.pop("AP_per_class")
        if store is not None:
            names = id2label or {}
            store["per_class_ap"] = {names.get(i, str(i)): ap for i, ap in enumerate(per_class) if not math.isnan(ap)}
        result.update(f1_metric.compute(predictions=(logits > threshold).astype(np.int32), references=references))
        return result

    return compute_metrics


__all__ = ["METRICS_DIR", "METRIC_NAMES", "load_metric", "keep_logits", "classification_compute_metrics"]
