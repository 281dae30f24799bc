"""Pictures for the model card (matplotlib is optional: a card without pictures is still a card)."""

import math


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


def plot_per_class_ap(per_class_ap: dict, path, max_classes: int = 30) -> str | None:
    """Horizontal bar chart of the best and worst classes by AP; returns the PNG path, or None without matplotlib."""
    plt = _pyplot()
    if plt is None or not per_class_ap:
        return None
    items = sorted(
        ((str(k), float(v)) for k, v in per_class_ap.items() if v is not None and math.isfinite(v)),
        key=lambda kv: kv[1],
        reverse=True,
    )
    if not items:
        return None
    if len(items) > max_classes:
        half = max_classes // 2
        items = items[:half] + [("...", float("nan"))] + items[-half:]
    labels = [k for k, _ in items][::-1]
    values = [0.0 if math.isnan(v) else v for _, v in items][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(items) + 1.2))
    ax.barh(labels, values, color="#4c72b0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("average precision")
    ax.set_title("Per-class AP" + (" (best and worst)" if len(per_class_ap) > max_classes else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def plot_training_curve(log_history: list, path) -> str | None:
    """Training loss (and eval loss / main eval metric) against step; returns the PNG path or None."""
    plt = _pyplot()
    if plt is None or not log_history:
        return None
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("Training curve")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
