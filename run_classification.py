#!/usr/bin/env python
"""
Fine-tune AudioFormer for audio classification (paper 3.3): FT1, and FT2 with multi-positive contrastive learning.

    # The main job: no dataset argument = a DEMO on synthesised clips with a tiny seeded codec and a tiny model,
    # offline, a few minutes on CPU. Writes ./demo_data (audio, codec, codes) and ./demo_output (the model).
    python run_classification.py

    # FT1 on a real set (multi-label: the label column holds lists; single-label: strings)
    accelerate launch run_classification.py --model_name_or_path <pretrained> --data_dir <audiofolder> \
        --label_column_name labels --max_duration 10 --do_train --do_eval --output_dir out \
        --learning_rate 1e-4 --num_train_epochs 10 --eval_strategy epoch --save_strategy epoch \
        --load_best_model_at_end --metric_for_best_model mAP --early_stopping_patience 3

    # FT2: add the frozen models pretrained on C2..C4
    ... --mpc_positive_models <pretrained-C2> <pretrained-C3> <pretrained-C4> --mpc_alpha 0.95 --mpc_temperature 0.05

    python run_classification.py configs/ft_as20k_ft1.json          # the paper's recipes, see configs/

Data flags, codec and model flags are `run_mlm.py`'s (`tokenization/training_data.py`); raw audio is tokenized
once and cached. The output folder is a ready Hub repository: safetensors weights, config with `auto_map`, the
feature extractor, the remote-code files and a model card with the run's metrics (`--push_to_hub` uploads it).
"""

import logging
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

import datasets
import transformers
from transformers import EarlyStoppingCallback, HfArgumentParser, TrainingArguments, set_seed

from modeling_audioformer import AudioFormerForAudioClassification
from modeling_audioformer.hub import publish_from_training_args, write_model_card
from modeling_audioformer.metrics import load_metric
from modeling_audioformer.mpc_training import AudioClassificationTrainer, load_positive_models
from modeling_audioformer.sampling import inverse_frequency_weights
from tokenization.collators import pad_code_rows
from tokenization.training_data import (
    DataTrainingArguments,
    ModelArguments,
    load_config,
    load_model,
    max_positions_check,
    num_codebooks_of,
    parse_args,
    prepare_code_datasets,
    training_args_summary,
)


logger = logging.getLogger(__name__)

DATA_FLAGS = ("--dataset_name", "--data_dir", "--train_file", "--validation_file", "--tokenized_dataset")
LOSSES = ("ce", "bce", "lsep")


@dataclass
class ClassificationArguments:
    """Labels, FT1 / FT2 losses, sampling and early stopping."""

    label_column_name: str = field(
        default="label",
        metadata={"help": "Label column: a string (or ClassLabel) per clip = single-label, a list per clip = multi-label."},
    )
    loss: str | None = field(
        default=None, metadata={"help": "ce (single-label), bce or lsep (multi-label). Default: ce / lsep."}
    )
    mpc_positive_models: list[str] | None = field(
        default=None, metadata={"help": "FT2: frozen pretrained models of C2 [C3 ...], one per positive codebook."}
    )
    mpc_positive_codebooks: list[int] | None = field(
        default=None, metadata={"help": "FT2: codebook row of each positive model (default: each model's config)."}
    )
    mpc_alpha: float = field(default=0.95, metadata={"help": "FT2: weight of the classification loss (eq. 9)."})
    mpc_temperature: float = field(default=0.05, metadata={"help": "FT2: temperature tau of the MPC loss (eq. 8)."})
    weighted_sampling: bool = field(
        default=False, metadata={"help": "Draw training clips with weights from inverse label frequency (AS-2M)."}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improving --metric_for_best_model."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Start from a fine-tuned model with other labels (e.g. FSD50K from AudioSet): new classifier."},
    )
    multi_label_threshold: float = field(
        default=0.0, metadata={"help": "Logit above which a class counts as predicted, for the F1 scores."}
    )
    demo_dir: str = field(
        default="demo_data", metadata={"help": "Where the demo (no dataset argument) writes its audio, codec and codes."}
    )

    def __post_init__(self):
        if self.loss is not None and self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {self.loss!r}.")
        if not 0.0 <= self.mpc_alpha <= 1.0:
            raise ValueError(f"--mpc_alpha must be in [0, 1], got {self.mpc_alpha}.")
        if self.mpc_temperature <= 0:
            raise ValueError(f"--mpc_temperature must be positive, got {self.mpc_temperature}.")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"--early_stopping_patience must be >= 1, got {self.early_stopping_patience}.")


# ---------------------------------------------------------------------------------------------- the demo


def is_demo(argv: list[str]) -> bool:
    """No data source on the command line (and no config file): run the demo."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        return False
    return not any(arg.split("=")[0] in DATA_FLAGS for arg in argv)


def demo_argv(argv: list[str]) -> list[str]:
    """Writes the demo data and codec, and returns the demo's flags followed by the user's (which win)."""
    from tokenization.demo_data import DEMO_NOTE, write_demo_audiofolder
    from tokenization.tiny_codec import build_tiny_feature_extractor

    demo_dir = ClassificationArguments.demo_dir
    if "--demo_dir" in argv:
        demo_dir = argv[argv.index("--demo_dir") + 1]
    print(f"[DEMO] No dataset given: running the demo in {demo_dir} (tiny seeded codec, tiny model).\n[DEMO] {DEMO_NOTE}")
    # Absolute, since the saved feature extractor keeps this path to find its codec.
    codec_dir = os.path.abspath(os.path.join(demo_dir, "tiny_codec"))
    if not os.path.isfile(os.path.join(codec_dir, "preprocessor_config.json")):
        build_tiny_feature_extractor(codec_dir, seed=0, max_duration=1.0)
    audio_dir = write_demo_audiofolder(os.path.join(demo_dir, "audio"), num_train=60, num_validation=20, seed=0)
    defaults = [
        "--data_dir", audio_dir, "--feature_extractor_name", codec_dir, "--label_column_name", "label",
        "--tokenized_cache_dir", os.path.join(demo_dir, "tokenized"),
        "--config_overrides", "hidden_size=64,num_hidden_layers=2,num_attention_heads=4,intermediate_size=128,"
                              "max_position_embeddings=128",
        "--output_dir", "demo_output", "--do_train", "--do_eval", "--seed", "0",
        "--num_train_epochs", "15", "--learning_rate", "1e-3", "--warmup_steps", "8",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "20",
        "--eval_strategy", "epoch", "--save_strategy", "epoch", "--save_total_limit", "1",
        "--load_best_model_at_end", "--metric_for_best_model", "accuracy", "--early_stopping_patience", "5",
        "--logging_steps", "10", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0",
    ]
    return defaults + argv


# ---------------------------------------------------------------------------------------------- labels


def _is_list_feature(feature) -> bool:
    return isinstance(feature, (datasets.Sequence, datasets.List)) or isinstance(feature, list)


def _label_order(name: str):
    """Numeric names in numeric order, then the rest alphabetically."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def read_labels(dataset: datasets.Dataset, column: str, split: str) -> tuple[list, bool]:
    """
    The label column as names: `(rows, multi_label)`, rows a list of str (single-label) or of lists of str.

    Raises a ValueError naming the rows whose label is missing (None or empty string).
    """
    if column not in dataset.column_names:
        raise ValueError(f"No label column {column!r} in split '{split}' (columns: {dataset.column_names}); set "
                         "--label_column_name.")
    feature = dataset.features[column]
    multi_label = _is_list_feature(feature)
    inner = (feature.feature if hasattr(feature, "feature") else feature[0]) if multi_label else feature
    names = inner.names if isinstance(inner, datasets.ClassLabel) else None

    def name(value):
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            return None
        return names[value] if names is not None else str(value)

    values = dataset[column]
    if multi_label:
        rows = [None if v is None else [name(x) for x in v] for v in values]
        missing = [i for i, r in enumerate(rows) if r is None or any(x is None for x in r)]
    else:
        rows = [name(v) for v in values]
        missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        raise ValueError(f"Split '{split}': {len(missing)} row(s) have no label in column {column!r}, rows "
                         f"{missing[:20]}{' ...' if len(missing) > 20 else ''}. Fill them or drop those clips.")
    return rows, multi_label


def label_names_from_checkpoint(config) -> list[str] | None:
    """The labels of a fine-tuned checkpoint's config, or None for a pretraining one (default LABEL_i names)."""
    names = [config.id2label[i] for i in sorted(config.id2label)]
    if config.problem_type is None and all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def encode_labels(rows: list, label2id: dict, multi_label: bool, split: str) -> list:
    """Names -> class index (single-label) or sorted index list (multi-label); ValueError naming unknown rows."""
    unknown_rows, unknown = [], set()
    encoded = []
    for i, row in enumerate(rows):
        names = row if multi_label else [row]
        bad = [n for n in names if n not in label2id]
        if bad:
            unknown_rows.append(i)
            unknown.update(bad)
            continue
        ids = sorted(label2id[n] for n in names)
        encoded.append(ids if multi_label else ids[0])
    if unknown_rows:
        raise ValueError(
            f"Split '{split}': {len(unknown_rows)} row(s) have labels the model does not know, rows "
            f"{unknown_rows[:20]}{' ...' if len(unknown_rows) > 20 else ''}; unknown labels "
            f"{sorted(unknown)[:20]}. The known labels are those of the training split (or of the fine-tuned "
            "checkpoint; --ignore_mismatched_sizes trains a new classifier on the data's labels)."
        )
    return encoded


# ---------------------------------------------------------------------------------------------- batches, metrics


@dataclass
class ClassificationCollator:
    """
    Pads code rows and builds `labels` from `label_ids`: `(B,)` class indices, or `(B, num_labels)` multi-hot.

    `codebook_index` keeps one row (`(B, T)` input_ids, FT1); None keeps all (`(B, K, T)`, FT2). Rows longer
    than `max_length` ids are cut, keeping their last id (`<EOA>`).
    """

    num_labels: int
    multi_label: bool
    codebook_index: int | None = None
    max_length: int | None = None
    pad_to_multiple_of: int | None = None

    def __call__(self, examples) -> dict:
        rows = []
        for e in examples:
            ids = np.asarray(e["input_ids"])
            if self.max_length is not None and ids.shape[-1] > self.max_length:
                ids = np.concatenate([ids[..., : self.max_length - 1], ids[..., -1:]], axis=-1)
            rows.append({"input_ids": ids})
        batch = pad_code_rows(rows, codebook_index=self.codebook_index, pad_to_multiple_of=self.pad_to_multiple_of)
        if "label_ids" in examples[0]:
            if self.multi_label:
                labels = torch.zeros(len(examples), self.num_labels)
                for i, e in enumerate(examples):
                    labels[i, list(e["label_ids"])] = 1.0
            else:
                labels = torch.tensor([int(e["label_ids"]) for e in examples], dtype=torch.long)
            batch["labels"] = labels
        return batch


def keep_logits(logits, labels):
    """The model also returns `pooled_output`; only the logits are kept for the metrics."""
    return logits[0] if isinstance(logits, tuple) else logits


def build_compute_metrics(multi_label: bool, id2label: dict, threshold: float, store: dict):
    """
    `compute_metrics` for the Trainer: {"mAP", "micro_f1", "macro_f1"} (multi-label) or {"accuracy"}; reported
    as eval_mAP / eval_accuracy. The per-class AP of the latest evaluation is kept in `store["per_class_ap"]`.
    """
    if multi_label:
        map_metric, f1_metric = load_metric("mean_average_precision"), load_metric("multilabel_f1")
    else:
        accuracy_metric = load_metric("accuracy")

    def compute_metrics(eval_pred):
        logits = keep_logits(eval_pred.predictions, None)
        labels = eval_pred.label_ids
        if not multi_label:
            return accuracy_metric.compute(predictions=logits.argmax(-1), references=labels)
        references = (labels > 0.5).astype(np.int32)
        result = map_metric.compute(predictions=logits, references=references, return_per_class=True)
        per_class = result.pop("AP_per_class")
        store["per_class_ap"] = {id2label[i]: ap for i, ap in enumerate(per_class) if not math.isnan(ap)}
        result.update(f1_metric.compute(predictions=(logits > threshold).astype(np.int32), references=references))
        return result

    return compute_metrics


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else list(argv)
    demo = is_demo(argv)
    if demo:
        argv = demo_argv(argv)
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, ClassificationArguments, TrainingArguments))
    model_args, data_args, cls_args, training_args = parse_args(parser, argv)

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning("Process rank: %d, world size: %d, device: %s, distributed: %s", training_args.process_index,
                   training_args.world_size, training_args.device, training_args.parallel_mode.value)
    logger.info("Training parameters %s", training_args)
    if cls_args.early_stopping_patience is not None:
        if training_args.eval_strategy == "no":
            raise ValueError("--early_stopping_patience needs evaluations: set --eval_strategy epoch (or steps).")
        if training_args.metric_for_best_model is None:
            raise ValueError("--early_stopping_patience needs --metric_for_best_model (e.g. mAP or accuracy).")
    set_seed(training_args.seed)

    # 1. Data: code ids (raw audio tokenized once and cached) and labels.
    code_datasets, feature_extractor = prepare_code_datasets(model_args, data_args, training_args)
    label_rows, multi_label = {}, None
    for split, ds in code_datasets.items():
        label_rows[split], split_multi = read_labels(ds, cls_args.label_column_name, split)
        if multi_label is not None and split_multi != multi_label:
            raise ValueError(f"Column {cls_args.label_column_name!r} is a list in one split and not in another.")
        multi_label = split_multi

    # 2. Labels and config. A fine-tuned checkpoint keeps its labels unless --ignore_mismatched_sizes.
    checkpoint_labels = None
    if model_args.model_name_or_path and not cls_args.ignore_mismatched_sizes:
        checkpoint_labels = label_names_from_checkpoint(load_config(model_args))
    if checkpoint_labels is not None:
        label_names = checkpoint_labels
    else:
        reference = label_rows["train"] if "train" in label_rows else label_rows["validation"]
        seen = {n for row in reference for n in (row if multi_label else [row])}
        label_names = sorted(seen, key=_label_order)
    label2id = {name: i for i, name in enumerate(label_names)}
    id2label = dict(enumerate(label_names))
    for split in code_datasets:
        encoded = encode_labels(label_rows[split], label2id, multi_label, split)
        feature = datasets.List(datasets.Value("int32")) if multi_label else datasets.Value("int64")
        # add_column works in memory: no cache file for the processes of a DDP run to race on.
        code_datasets[split] = code_datasets[split].select_columns(["input_ids"]).add_column(
            "label_ids", encoded, feature=feature)

    loss = cls_args.loss or ("lsep" if multi_label else "ce")
    if multi_label and loss == "ce":
        raise ValueError(f"--loss ce is for single-label data, but {cls_args.label_column_name!r} holds lists: use "
                         "lsep or bce.")
    if not multi_label and loss != "ce":
        raise ValueError(f"--loss {loss} is for multi-label data, but {cls_args.label_column_name!r} holds one label "
                         "per clip: use ce, or a list column.")
    if len(label_names) < 2:
        raise ValueError(f"Classification needs at least 2 classes; the labels are {label_names}.")
    config_kwargs = dict(id2label=id2label, label2id=label2id,
                         problem_type="multi_label_classification" if multi_label else "single_label_classification")
    if multi_label:
        config_kwargs["multi_label_loss"] = loss
    config = load_config(model_args, num_codebooks=num_codebooks_of(code_datasets), **config_kwargs)
    max_positions_check(code_datasets, config)

    # 3. Models: the anchor (an MLM checkpoint's head is dropped, the classifier is new) and, for FT2, positives.
    model = load_model(AudioFormerForAudioClassification, model_args, config,
                       ignore_mismatched_sizes=cls_args.ignore_mismatched_sizes)
    positive_models = None
    if cls_args.mpc_positive_models:
        positive_models = load_positive_models(cls_args.mpc_positive_models, config, cls_args.mpc_positive_codebooks,
                                               cache_dir=model_args.cache_dir, token=model_args.token)
        for path, positive in zip(cls_args.mpc_positive_models, positive_models):
            if positive.config.codebook_index >= config.num_codebooks:
                raise ValueError(f"Positive model {path} reads codebook row {positive.config.codebook_index}, but "
                                 f"the data has {config.num_codebooks} codebooks.")
        logger.info("FT2: %d frozen positive model(s) on codebook rows %s, alpha=%s, tau=%s", len(positive_models),
                    [p.config.codebook_index for p in positive_models], cls_args.mpc_alpha, cls_args.mpc_temperature)

    max_length = None
    if model_args.max_duration is not None:
        max_length = math.ceil(model_args.max_duration * feature_extractor.sampling_rate
                               / feature_extractor.hop_length) + 2
    collator = ClassificationCollator(
        num_labels=len(label_names), multi_label=multi_label, max_length=max_length,
        codebook_index=None if positive_models else config.codebook_index,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
    )
    train_dataset = code_datasets["train"] if training_args.do_train else None
    sample_weights = None
    if cls_args.weighted_sampling and train_dataset is not None:
        sample_weights = inverse_frequency_weights(train_dataset["label_ids"], len(label_names))

    # The upload happens at the end with the model card (Trainer.push_to_hub would replace the card).
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    store = {}
    callbacks = []
    if cls_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cls_args.early_stopping_patience))
    trainer = AudioClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=code_datasets["validation"] if training_args.do_eval else None,
        data_collator=collator,
        compute_metrics=build_compute_metrics(multi_label, id2label, cls_args.multi_label_threshold, store),
        preprocess_logits_for_metrics=keep_logits,
        callbacks=callbacks,
        positive_models=positive_models,
        mpc_alpha=cls_args.mpc_alpha,
        mpc_temperature=cls_args.mpc_temperature,
        sample_weights=sample_weights,
    )

    # 4. Train, evaluate, save a ready Hub folder.
    metrics = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if trainer.is_world_process_zero():
        if not training_args.do_train:
            trainer.save_model()
        feature_extractor.save_pretrained(training_args.output_dir)
        write_card(training_args, model_args, data_args, cls_args, metrics, trainer, store, demo)
        if push_to_hub:
            publish_from_training_args(training_args)
    if demo and trainer.is_world_process_zero():
        name = "eval_mAP" if multi_label else "eval_accuracy"
        print(f"[DEMO] {name} = {metrics.get(name, float('nan')):.4f} on the synthesised demo validation set "
              f"({len(label_names)} classes: chance {1 / len(label_names):.2f}); model in {training_args.output_dir}")
    return metrics


def write_card(training_args, model_args, data_args, cls_args, metrics, trainer, store, demo):
    dataset_name = data_args.dataset_name or data_args.data_dir or data_args.train_file or data_args.tokenized_dataset
    if demo:
        dataset_name = "synthesised demo clips (tokenization/demo_data.py), NOT real audio"
    summary = training_args_summary(training_args)
    summary["fine_tuning"] = "FT2 (MPC)" if cls_args.mpc_positive_models else "FT1"
    if cls_args.mpc_positive_models:
        summary.update(mpc_alpha=cls_args.mpc_alpha, mpc_temperature=cls_args.mpc_temperature)
    return write_model_card(
        training_args.output_dir, task="audio-classification", metrics=metrics, dataset_name=dataset_name,
        base_model=model_args.model_name_or_path, training_args=summary, log_history=trainer.state.log_history,
        per_class_ap=store.get("per_class_ap"),
    )


if __name__ == "__main__":
    main()
