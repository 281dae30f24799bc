"""Mean average precision (mAP) for multi-label audio tagging, as a local `evaluate` module.

    metric = evaluate.load("training/metrics/mean_average_precision")   # a path: no Hub access
    metric.compute(predictions=scores, references=multi_hot)  # -> {"mAP": ...}

mAP is the macro average over classes of the average precision (the area under the precision-recall curve as
a step function, `AP = sum_n (R_n - R_{n-1}) P_n`, the definition of scikit-learn's `average_precision_score`),
taken over the classes that have at least one positive clip: AP is undefined for a class without one. This is
the AudioSet / FSD50K metric of the paper (section 4.1).
"""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = "Macro mean average precision over the classes that have at least one positive reference."

_KWARGS_DESCRIPTION = """
Args:
    predictions: `(N, C)` scores (logits or probabilities; only their order within a class matters).
    references: `(N, C)` multi-hot targets (0/1).
    return_per_class: also return "AP_per_class", a list of C floats (NaN for classes without a positive).
Returns:
    {"mAP": float} (NaN when no class has a positive).
"""


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """`(N,)` scores, `(N,)` 0/1 targets -> AP; tied scores form one threshold, as in scikit-learn."""
    order = np.argsort(-scores, kind="mergesort")
    scores, targets = scores[order], targets[order]
    # Last index of each run of equal scores: the precision-recall curve only has a point there.
    thresholds = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(targets)[thresholds]
    precision = true_positives / (thresholds + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """`(N, C)` scores, `(N, C)` 0/1 targets -> (mAP over classes with a positive, `(C,)` AP with NaN elsewhere)."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0.5
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"mean average precision needs predictions and references of the same shape (N, C), got "
            f"{scores.shape} and {targets.shape}."
        )
    per_class = np.full(scores.shape[1], np.nan)
    for c in np.flatnonzero(targets.any(axis=0)):
        per_class[c] = average_precision(scores[:, c], targets[:, c].astype(np.float64))
    has_positive = ~np.isnan(per_class)
    mean = float(per_class[has_positive].mean()) if has_positive.any() else float("nan")
    return mean, per_class


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanAveragePrecision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references, return_per_class: bool = False):
        mean, per_class = mean_average_precision(np.asarray(predictions), np.asarray(references))
        result = {"mAP": mean}
        if return_per_class:
            result["AP_per_class"] = per_class.tolist()
        return result
