"""The local evaluate metrics against scikit-learn on fixed arrays (no Hub access)."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from audioformer.training.metrics import load_metric


def fixed_multilabel(seed=0, num_clips=40, num_classes=7):
    rng = np.random.default_rng(seed)
    targets = (rng.random((num_clips, num_classes)) < 0.3).astype(np.int32)
    targets[:, 5] = 0  # a class without a positive: left out of the mean
    scores = rng.normal(size=(num_clips, num_classes)) + 1.5 * targets
    scores[:, 2] = np.round(scores[:, 2])  # ties
    return scores.astype(np.float32), targets


def test_map_matches_sklearn():
    scores, targets = fixed_multilabel()
    result = load_metric("mean_average_precision").compute(
        predictions=scores, references=targets, return_per_class=True
    )
    keep = targets.any(axis=0)
    expected = average_precision_score(targets[:, keep], scores[:, keep], average="macro")
    assert result["mAP"] == pytest.approx(expected, abs=1e-6)
    for c in range(targets.shape[1]):
        if keep[c]:
            assert result["AP_per_class"][c] == pytest.approx(
                average_precision_score(targets[:, c], scores[:, c]), abs=1e-6
            )
        else:
            assert math.isnan(result["AP_per_class"][c])


def test_map_hand_example():
    # Class 0: positives ranked 1st and 3rd -> AP = (1 + 2/3) / 2.
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    targets = np.array([[1, 0], [0, 0], [1, 1]])
    result = load_metric("mean_average_precision").compute(predictions=scores, references=targets)
    assert result["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)


def test_f1_matches_sklearn():
    scores, targets = fixed_multilabel(seed=1)
    predictions = (scores > 0.8).astype(np.int32)
    result = load_metric("multilabel_f1").compute(predictions=predictions, references=targets)
    assert result["micro_f1"] == pytest.approx(f1_score(targets, predictions, average="micro", zero_division=0))
    assert result["macro_f1"] == pytest.approx(f1_score(targets, predictions, average="macro", zero_division=0))


def test_accuracy():
    result = load_metric("accuracy").compute(predictions=[0, 2, 1, 1], references=[0, 1, 1, 1])
    assert result["accuracy"] == pytest.approx(0.75)


def test_bad_shapes_and_names():
    with pytest.raises(ValueError, match="same shape"):
        from audioformer.training.metrics.mean_average_precision.mean_average_precision import mean_average_precision

        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="Unknown metric"):
        load_metric("map")


def test_classification_metrics():
    from transformers import EvalPrediction

    from audioformer.training.metrics import ClassificationMetrics

    scores, targets = fixed_multilabel(seed=2)
    scores, targets = scores[:, :3], targets[:, :3]
    compute = ClassificationMetrics(True, {0: "a", 1: "b", 2: "c"}, thresholds=0.5)
    pooled = np.zeros((len(scores), 4), dtype=np.float32)  # (logits, pooled_output) as the model returns
    result = compute(EvalPrediction(predictions=(scores, pooled), label_ids=targets.astype(np.float32)))
    assert result["mAP"] == pytest.approx(average_precision_score(targets, scores, average="macro"), abs=1e-6)
    assert result["micro_f1"] == pytest.approx(f1_score(targets, scores > 0.5, average="micro", zero_division=0))
    assert compute.per_class_ap["b"] == pytest.approx(average_precision_score(targets[:, 1], scores[:, 1]), abs=1e-6)

    compute = ClassificationMetrics(False)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    assert compute(EvalPrediction(predictions=logits, label_ids=np.array([0, 0, 0])))["accuracy"] == pytest.approx(
        2 / 3
    )


def brute_force_f1(scores, targets, candidates):
    return max(f1_score(targets, (scores > t).astype(int), zero_division=0) for t in candidates)


def test_calibrated_thresholds_maximise_each_class_f1():
    """Against a brute-force search with scikit-learn's F1 over every cut between distinct scores."""
    from audioformer.training.metrics import calibrate_thresholds

    scores, targets = fixed_multilabel(seed=2, num_clips=60)
    thresholds = calibrate_thresholds(scores, targets)
    assert thresholds.shape == (7,)
    for c in range(7):
        if not targets[:, c].any():
            continue
        distinct = np.unique(scores[:, c].astype(np.float64))
        candidates = np.r_[distinct[0] - 1, (distinct[:-1] + distinct[1:]) / 2, distinct[-1] + 1]
        best = brute_force_f1(scores[:, c], targets[:, c], candidates)
        got = f1_score(targets[:, c], (scores[:, c] > thresholds[c]).astype(int), zero_division=0)
        assert got == pytest.approx(best, abs=1e-12), c
        assert not np.any(np.isclose(scores[:, c], thresholds[c]))  # between scores, never on one
    # Class 5 has no positive: it gets the micro-F1-optimal threshold of all classes pooled.
    pooled = scores.astype(np.float64).ravel()
    distinct = np.unique(pooled)
    candidates = (distinct[:-1] + distinct[1:]) / 2
    best_micro = brute_force_f1(pooled, targets.ravel(), candidates)
    assert f1_score(targets.ravel(), (pooled > thresholds[5]).astype(int)) == pytest.approx(best_micro, abs=1e-12)


def test_thresholds_follow_a_shift_of_the_logits():
    """An LSEP model's logits have no absolute scale; calibrated thresholds move with them."""
    from audioformer.training.metrics import calibrate_thresholds

    scores, targets = fixed_multilabel(seed=3)
    shift = np.arange(7) * 5.0 - 12.0
    has_positive = targets.any(axis=0)  # class 5 has none: it takes the pooled threshold, which shifts differently
    np.testing.assert_allclose(
        calibrate_thresholds(scores + shift, targets)[has_positive],
        (calibrate_thresholds(scores, targets) + shift)[has_positive],
    )
    with pytest.raises(ValueError, match="no positive"):
        calibrate_thresholds(scores, np.zeros_like(targets))


def test_f1_metrics_only_with_thresholds():
    from transformers import EvalPrediction

    from audioformer.training.metrics import ClassificationMetrics

    scores, targets = fixed_multilabel(seed=4)
    prediction = EvalPrediction(predictions=scores, label_ids=targets.astype(np.float32))
    assert set(ClassificationMetrics(True)(prediction)) == {"mAP"}  # no thresholds: F1 would be arbitrary
    thresholds = np.linspace(-0.5, 1.0, 7)
    result = ClassificationMetrics(True, thresholds=thresholds)(prediction)
    predicted = (scores > thresholds).astype(int)
    assert result["micro_f1"] == pytest.approx(f1_score(targets, predicted, average="micro", zero_division=0))
    assert result["macro_f1"] == pytest.approx(f1_score(targets, predicted, average="macro", zero_division=0))
