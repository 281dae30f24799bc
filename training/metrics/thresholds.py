"""Per-class decision thresholds for multi-label models, calibrated on a validation split.

An LSEP-trained model (paper eq. 7) has logits without an absolute scale (the loss only sees differences within a
clip), so "logit > 0" means nothing; a BCE-trained one is better served by thresholds fitted to its validation
errors too. `calibrate_thresholds` picks, for each class, the threshold that maximises that class's F1 on the
validation logits; classes without a positive there (F1 cannot be fitted) get the single threshold that maximises
micro F1 over all classes. Class `c` is predicted when `logit_c > threshold_c`; `run_classification.py` folds the
thresholds into the classifier's bias (`AudioFormerForAudioClassification.fold_decision_thresholds`), after which
logit 0, i.e. sigmoid 0.5, is each class's threshold.

    thresholds = calibrate_thresholds(validation_logits, validation_multi_hot)   # (C,) float64
"""

import numpy as np


# Below the lowest logit when predicting every clip is best: a margin in logit units.
BELOW_ALL = 1.0


def best_f1_threshold(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """`(N,)` scores, `(N,)` 0/1 targets -> (threshold, F1) with the best F1 of `scores > threshold`.

    Candidate thresholds lie halfway between consecutive distinct scores (tied scores are predicted together).
    Predicting the top `k` clips gives `F1 = 2 TP_k / (k + P)`; among equal F1 the highest threshold wins.
    Without a positive the F1 is 0 everywhere and the threshold is above every score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0.5
    if scores.ndim != 1 or scores.shape != targets.shape or scores.size == 0:
        raise ValueError(f"Expected two non-empty (N,) arrays, got {scores.shape} and {targets.shape}.")
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], targets[order]
    num_positive = int(hits.sum())
    if num_positive == 0:
        return float(ranked[0] + BELOW_ALL), 0.0
    # Cuts only where the score changes: the last index of each run of equal scores.
    cuts = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_positives = np.cumsum(hits)[cuts]
    f1 = 2 * true_positives / (cuts + 1 + num_positive)
    best = int(np.argmax(f1))  # the first maximum: the fewest predicted clips, the highest threshold
    k = cuts[best]
    threshold = (ranked[k] + ranked[k + 1]) / 2 if k + 1 < len(ranked) else ranked[k] - BELOW_ALL
    return float(threshold), float(f1[best])


def calibrate_thresholds(logits: np.ndarray, references: np.ndarray) -> np.ndarray:
    """`(N, C)` validation logits and `(N, C)` multi-hot references -> `(C,)` decision thresholds (logit units).

    Each class with a positive gets its own F1-optimal threshold; the others get the micro-F1-optimal threshold
    of all classes pooled.
    """
    logits = np.asarray(logits, dtype=np.float64)
    references = np.asarray(references) > 0.5
    if logits.ndim != 2 or logits.shape != references.shape:
        raise ValueError(
            f"calibrate_thresholds needs logits and references of the same shape (N, C), got {logits.shape} and "
            f"{references.shape}."
        )
    if not references.any():
        raise ValueError("The validation split has no positive label: decision thresholds cannot be calibrated.")
    pooled, _ = best_f1_threshold(logits.ravel(), references.ravel())
    thresholds = np.full(logits.shape[1], pooled)
    for c in np.flatnonzero(references.any(axis=0)):
        thresholds[c], _ = best_f1_threshold(logits[:, c], references[:, c])
    return thresholds


__all__ = ["best_f1_threshold", "calibrate_thresholds"]
