"""Micro and macro F1 for multi-label classification, as a local `evaluate` module.

    metric = evaluate.load("training/metrics/multilabel_f1")
    metric.compute(predictions=multi_hot_predictions, references=multi_hot)  # -> {"micro_f1", "macro_f1"}

Micro F1 pools the true/false positives of all classes; macro F1 averages the per-class F1 over all classes,
a class with no positive and no predicted positive scoring 0 (scikit-learn's `f1_score` with `zero_division=0`).
"""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = "Micro- and macro-averaged F1 of multi-hot predictions."

_KWARGS_DESCRIPTION = """
Args:
    predictions: `(N, C)` predicted multi-hot labels (0/1), e.g. `logits > 0`.
    references: `(N, C)` multi-hot targets (0/1).
Returns:
    {"micro_f1": float, "macro_f1": float}
"""


def f1_scores(predictions: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """`(N, C)` 0/1 predictions and targets -> (micro F1, macro F1)."""
    predictions = np.asarray(predictions) > 0.5
    targets = np.asarray(targets) > 0.5
    if predictions.ndim != 2 or predictions.shape != targets.shape:
        raise ValueError(
            f"F1 needs predictions and references of the same shape (N, C), got {predictions.shape} "
            f"and {targets.shape}."
        )
    true_positives = (predictions & targets).sum(axis=0)
    false_positives = (predictions & ~targets).sum(axis=0)
    false_negatives = (~predictions & targets).sum(axis=0)

    def f1(tp, fp, fn):
        denominator = 2 * tp + fp + fn
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)

    micro = f1(true_positives.sum(), false_positives.sum(), false_negatives.sum())
    macro = f1(true_positives, false_positives, false_negatives).mean()
    return float(micro), float(macro)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references):
        micro, macro = f1_scores(np.asarray(predictions), np.asarray(references))
        return {"micro_f1": micro, "macro_f1": macro}
