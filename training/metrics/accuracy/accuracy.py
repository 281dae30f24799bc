"""Accuracy for single-label (multi-class) classification, as a local `evaluate` module.

metric = evaluate.load("training/metrics/accuracy")   # a path: works offline
metric.compute(predictions=[0, 2, 1], references=[0, 1, 1])  # -> {"accuracy": 0.666...}
"""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = "The fraction of predictions equal to the reference class."

_KWARGS_DESCRIPTION = """
Args:
    predictions: `(N,)` predicted class indices (e.g. `logits.argmax(-1)`).
    references: `(N,)` true class indices.
Returns:
    {"accuracy": float}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if predictions.shape != references.shape:
            raise ValueError(
                f"accuracy needs predictions and references of the same shape, got {predictions.shape} "
                f"and {references.shape}."
            )
        return {"accuracy": float((predictions == references).mean()) if len(references) else float("nan")}
