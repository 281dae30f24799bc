"""
The model card of a training run: `write_model_card(output_dir, task=...)` fills `model_cards/audioformer_card.md`
from a finished run (config, metrics, hyper-parameters, curves) and writes `README.md` (+ plots, a widget example,
`handler.py`) into `output_dir`. `run_mlm.py` and `run_classification.py` call it after `trainer.save_model`.
"""

import logging
import math
import os
import re
from pathlib import Path
from string import Template

from audioformer.modeling_audioformer import long_audio
from audioformer.modeling_audioformer.configuration_audioformer import DEFAULT_CODEC

from .plots import plot_per_class_ap, plot_training_curve
from .remote_code import read_folder_json, write_remote_code
from .widget import widget_example


logger = logging.getLogger(__name__)

CARD_DIR = Path(__file__).resolve().parent
CARD_TEMPLATE = CARD_DIR / "audioformer_card.md"

TASKS = ("audio-classification", "fill-mask")


# Trainer bookkeeping numbers that are not results.
NOT_RESULTS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "step", "total_flos")
# Metric prefixes (Trainer's `metric_key_prefix`) and the dataset split each is measured on, unless told otherwise.
DEFAULT_SPLIT_NAMES = {"eval": "validation", "test": "test"}
SPLIT_ROLES = {
    "eval": "validation: the split the best checkpoint (and any decision thresholds) was selected on, so optimistic",
    "test": "test: evaluated once, at the end, with the selected model",
}


def result_metrics(metrics: dict | None) -> dict:
    """`{"eval_mAP": 0.41, "eval_runtime": 3.2}` -> `{"mAP": 0.41}`: finite numbers that are results."""
    out = {}
    for key, value in (metrics or {}).items():
        name = re.sub(r"^(eval|test|predict)_", "", str(key))
        if any(name.endswith(s) for s in NOT_RESULTS) or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
    return out


def results_by_split(metrics: dict | None) -> dict[str, dict]:
    """`{"eval_mAP": 0.41, "test_mAP": 0.39, "eval_runtime": 3}` -> `{"eval": {"mAP": 0.41}, "test": {"mAP": 0.39}}`
    (finite numbers that are results; a name without a prefix counts as "eval")."""
    out = {}
    for key, value in (metrics or {}).items():
        match = re.match(r"^(eval|test|predict)_", str(key))
        prefix = "test" if match and match.group(1) in ("test", "predict") else "eval"
        out.setdefault(prefix, {}).update(result_metrics({key: value}))
    return {prefix: values for prefix, values in out.items() if values}


def _metric_type(name: str) -> str:
    lower = name.lower()
    if lower in ("map", "mean_average_precision"):
        return "mAP"
    return lower


def hub_id(name: str | None) -> str | None:
    """`name` if it can be a Hub repo id (not a local path, not free text), else None."""
    if name and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) and not os.path.exists(name):
        return name
    return None


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


SPACE_LINK = "**Try it in your browser:**"


def link_space(output_dir, space_id: str) -> bool:
    """
    Puts a line linking the model's Space (`python -m audioformer.model_cards.publish ... --space_id`) under the
    summary of
    the card (`README.md` in `output_dir`), or updates the one there; False when there is no card.
    """
    readme = Path(output_dir) / "README.md"
    if not readme.is_file():
        return False
    link = (
        f"{SPACE_LINK} the Space [{space_id}](https://huggingface.co/spaces/{space_id}) runs this model on audio "
        "you upload or record."
    )
    lines = readme.read_text(encoding="utf-8").splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith(SPACE_LINK)), None)
    if at is not None:
        lines[at] = link
    else:
        body = lines.index("---", 1) + 1 if lines and lines[0] == "---" and "---" in lines[1:] else 0  # past metadata
        at = next((i for i in range(body, len(lines)) if lines[i].startswith("# ")), len(lines) - 1) + 1
        while at < len(lines) and not lines[at].strip():  # the blank lines under the title
            at += 1
        while at < len(lines) and lines[at].strip():  # the summary paragraph
            at += 1
        lines[at:at] = ["", link]
    readme.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return True


def _metadata(task, config, by_split, split_names, dataset_name, base_model, widget) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    eval_results = []
    for prefix in ("test", "eval"):  # the test results first: they are the ones to compare
        for name, value in by_split.get(prefix, {}).items():
            if name == "loss" and task == "audio-classification":
                continue
            eval_results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=hub_id(dataset_name) or "custom",
                    dataset_name=dataset_name or "custom",
                    metric_type=_metric_type(name),
                    metric_name=f"{name} ({prefix if prefix == 'test' else 'validation'})",
                    metric_value=round(value, 6),
                    dataset_split=split_names[prefix],
                )
            )
    metrics = {name for values in by_split.values() for name in values}
    tags = ["audio", "audioformer", "encodec", "roformer", "discrete-acoustic-codes", "custom_code"]
    if task == "audio-classification":
        tags.append("audio-classification")
    if config.get("problem_type") == "multi_label_classification":
        tags.append("multi-label")
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=task,
        license="apache-2.0",
        tags=tags,
        datasets=[hub_id(dataset_name)] if hub_id(dataset_name) else None,
        base_model=hub_id(base_model),
        metrics=sorted({_metric_type(n) for n in metrics if n != "loss"}) or None,
        model_name=config.get("_name_or_path") and Path(config["_name_or_path"]).name or "audioformer",
        eval_results=eval_results or None,
        widget=[widget] if widget else None,
    )
    return data.to_yaml()


def codebooks_read(config: dict) -> str:
    """What the card says the model reads: "codebook row C1", or for a fused model "codebook rows C1 + C2 + C3 + C4
    at once (a frame's embedding is the sum of one embedding per codebook)"."""
    rows = config.get("input_codebooks")
    if not rows:
        return f"codebook row C{int(config.get('codebook_index', 0)) + 1}"
    names = " + ".join(f"C{int(k) + 1}" for k in rows)
    return f"codebook rows {names} at once (a frame's embedding is the sum of one embedding per codebook)"


def _usage(task: str, multi_label: bool, max_duration: float, calibrated: bool = False) -> str:
    repo = "ORG/NAME"
    if task == "fill-mask":
        return f"""```python
import numpy as np
from transformers import AutoFeatureExtractor, AutoModel, AutoModelForMaskedLM

repo = "{repo}"  # this repository
feature_extractor = AutoFeatureExtractor.from_pretrained(repo, trust_remote_code=True)
model = AutoModel.from_pretrained(repo, trust_remote_code=True)  # the encoder, for features or fine-tuning

audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)  # 1 s at 16 kHz
inputs = feature_extractor(audio, sampling_rate=16000)  # input_ids (1, 4, frames + 2), attention_mask
hidden = model(**inputs).last_hidden_state  # (1, frames + 2, hidden_size)
```

Fine-tune it for classification with `run_classification.py --model_name_or_path {repo}` from the
AudioFormer project, or
`AutoModelForAudioClassification.from_pretrained(repo, num_labels=..., trust_remote_code=True)`."""
    scores = 'see "What the scores mean"' if multi_label else "softmax"
    to_scores = f"scores = logits.{'sigmoid()' if multi_label else 'softmax(-1)'}"
    if multi_label and calibrated:
        to_scores += "  # 0.5 = at the class's decision threshold (calibrated into the classifier)"
    return f"""```python
import numpy as np
from transformers import pipeline

classifier = pipeline("audio-classification", model="{repo}", trust_remote_code=True)
audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)  # 1 s at 16 kHz
print(classifier({{"raw": audio, "sampling_rate": 16000}}, top_k=5))  # any rate; scores: {scores}
print(classifier("clip.wav"))  # a file path needs the ffmpeg binary
```

Or call the model directly; the feature extractor resamples by itself:

```python
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

feature_extractor = AutoFeatureExtractor.from_pretrained("{repo}", trust_remote_code=True)
model = AutoModelForAudioClassification.from_pretrained("{repo}", trust_remote_code=True).eval()
audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)  # 1 s at 16 kHz
inputs = feature_extractor(audio, sampling_rate=16000)  # one clip (T,), a batch (B, T), or a list of clips
with torch.no_grad():
    logits = model(**inputs).logits  # (1, num_labels)
{to_scores}
```

The repository declares its own pipeline class (`long_audio.py`), which the pipeline above runs: it resamples any
rate without `torchaudio` and classifies audio longer than {max_duration:g} s by sliding windows (the default is the
paper's truncation):

```python
long_audio = np.zeros(16000 * 35, dtype=np.float32)  # 35 s at 16 kHz
classifier({{"raw": long_audio, "sampling_rate": 16000}}, long_audio="mean", hop_duration=5.0)
```

With the AudioFormer project installed (`pip install -e .` in its repository), `trust_remote_code` is not needed;
the project's classes are used then, and `pipeline(...)` is transformers' stock one unless given
`pipeline_class=AudioFormerAudioClassificationPipeline` (from `modeling_audioformer.long_audio`)."""


def _scores_section(task: str, config: dict, widget: dict | None) -> str:
    """ "What the scores mean" for a classifier (the text of `long_audio.score_description`), else nothing."""
    if task != "audio-classification":
        return ""
    text = "## What the scores mean\n\n" + long_audio.score_description(config)
    if widget:
        text += " The widget example on this page shows the scores of this checkpoint on `example.wav`, computed so."
    return text + "\n"


def write_model_card(
    output_dir: str,
    *,
    task: str,
    metrics: dict | None = None,
    dataset_name: str | None = None,
    base_model: str | None = None,
    training_args: dict | None = None,
    log_history: list | None = None,
    per_class_ap: dict | None = None,
    split_names: dict | None = None,
) -> str:
    """
    Writes `README.md` (Hub metadata + text) into the saved model folder `output_dir`, plus where possible
    `per_class_ap.png` / `training_curve.png`, `example.wav` (widget example), the code-id tokenizer and, for audio
    classification, `handler.py` and `requirements.txt` (Inference Endpoints) and `long_audio.py` (the pipeline
    `config.json` declares).
    Returns the README path.

    Args:
        task: `"audio-classification"` or `"fill-mask"` (a pretraining checkpoint).
        metrics: final evaluation metrics, e.g. `{"eval_mAP": 0.41, "test_mAP": 0.39}`: `eval_*` are validation
            results (selection), `test_*` the test results; both go into `model-index`, each with its split.
        dataset_name, base_model: shown and linked in the metadata.
        training_args: a few hyper-parameters to show, `{name: value}`.
        log_history: `trainer.state.log_history`, for the training curve.
        per_class_ap: `{label: AP}`, for the per-class bar chart.
        split_names: the dataset split behind each metric prefix, e.g. `{"eval": "train (10% seeded hold-out)",
            "test": "eval"}` for AudioSet; default `DEFAULT_SPLIT_NAMES`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise ValueError(f"output_dir {str(output_dir)!r} is not a folder: save the model there first.")
    config = read_folder_json(output_dir / "config.json")
    fe_config = read_folder_json(output_dir / "preprocessor_config.json")
    by_split = results_by_split(metrics)
    split_names = {**DEFAULT_SPLIT_NAMES, **(split_names or {})}
    multi_label = config.get("problem_type") == "multi_label_classification"
    max_duration = float(fe_config.get("max_duration", 10.0))

    write_remote_code(output_dir, classifier=task == "audio-classification")
    widget = widget_example(output_dir) if task == "audio-classification" else None

    figures = []
    if per_class_ap and plot_per_class_ap(per_class_ap, output_dir / "per_class_ap.png"):
        figures.append("![Per-class average precision](per_class_ap.png)")
    if log_history and plot_training_curve(log_history, output_dir / "training_curve.png"):
        figures.append("![Training curve](training_curve.png)")

    n_labels = len(config.get("id2label") or {})
    kind = {
        "audio-classification": f"{'multi-label' if multi_label else 'single-label'} audio classifier "
        f"({n_labels} classes)",
        "fill-mask": "masked-code-modelling (pretraining) checkpoint",
    }[task]
    on = (
        f" on [{dataset_name}](https://huggingface.co/datasets/{dataset_name})"
        if hub_id(dataset_name)
        else f" on {dataset_name}"
        if dataset_name
        else ""
    )
    summary = (
        f"An AudioFormer {kind}, trained{on}"
        + (f", starting from `{base_model}`" if base_model else "")
        + ". AudioFormer classifies audio from the discrete codes of the EnCodec neural codec."
    )

    results = ""
    if by_split:
        prefixes = [p for p in ("test", "eval") if p in by_split]
        names = list(dict.fromkeys(n for p in prefixes for n in by_split[p]))
        header = " | ".join(f"{'test' if p == 'test' else 'validation'} (`{split_names[p]}`)" for p in prefixes)
        rows = "\n".join(
            f"| {name} | "
            + " | ".join(_fmt(by_split[p][name]) if name in by_split[p] else "" for p in prefixes)
            + " |"
            for name in names
        )
        roles = "\n".join(f"- {SPLIT_ROLES[p]}." for p in prefixes)
        results = f"## Results\n\n{roles}\n\n| metric | {header} |\n|---|{'---|' * len(prefixes)}\n{rows}\n"
    if figures:
        results += "\n" + "\n\n".join(figures) + "\n"

    arch_keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "codebook_index",
        "input_codebooks",
        "problem_type",
        "multi_label_loss",
    )
    architecture = "\n".join(f"| {k} | {_fmt(config[k])} |" for k in arch_keys if config.get(k) is not None)

    training_lines = []
    if dataset_name:
        training_lines.append(f"- dataset: `{dataset_name}`")
    if base_model:
        training_lines.append(f"- initialised from: `{base_model}`")
    for key, value in (training_args or {}).items():
        training_lines.append(f"- {key}: `{_fmt(value)}`")
    training = "\n".join(training_lines) or "Hyper-parameters were not recorded for this run."
    training += (
        "\n\nPretraining: masked code modelling (25% of codes masked"
        + ("; whole frames, every codebook predicted by its own head). " if config.get("input_codebooks") else "). ")
        if task == "fill-mask"
        else "\n\nFine-tuning: mean-pooled encoder features, cross-entropy (single-label) or LSEP / BCE "
        "(multi-label); FT2 adds the multi-positive contrastive loss over codebooks (paper eq. 8-9). "
    )
    training += "See the AudioFormer project's `run_mlm.py` / `run_classification.py`."

    text = Template(CARD_TEMPLATE.read_text(encoding="utf-8")).substitute(
        metadata=_metadata(task, config, by_split, split_names, dataset_name, base_model, widget).strip(),
        title=f"AudioFormer{' for audio classification' if task == 'audio-classification' else ' (pretrained)'}",
        summary=summary,
        results=results,
        usage=_usage(task, multi_label, max_duration, calibrated=config.get("decision_thresholds") is not None),
        scores=_scores_section(task, config, widget),
        codec=fe_config.get("codec_name_or_path", DEFAULT_CODEC),
        codebooks_read=codebooks_read(config),
        max_duration=f"{max_duration:g}",
        architecture=architecture,
        training=training,
        dataset_phrase=f" ({dataset_name})" if dataset_name else "",
    )
    path = output_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return str(path)
