"""Local `evaluate` modules (loaded by path, so they work offline): `mean_average_precision`, `multilabel_f1`,
`accuracy`.

    from modeling_audioformer.metrics import load_metric
    load_metric("mean_average_precision").compute(predictions=scores, references=multi_hot)
"""

import os


METRICS_DIR = os.path.dirname(os.path.abspath(__file__))
METRIC_NAMES = ("mean_average_precision", "multilabel_f1", "accuracy")


def load_metric(name: str):
    """Loads one of `METRIC_NAMES` with `evaluate.load` from its folder here (in memory: no cache files, so
    several processes can compute at once)."""
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; the local metrics are {METRIC_NAMES}.")
    return evaluate.load(os.path.join(METRICS_DIR, name), keep_in_memory=True)


__all__ = ["METRICS_DIR", "METRIC_NAMES", "load_metric"]
