#!/usr/bin/env python
"""
Fine-tune AudioFormer for audio classification (paper 3.3): FT1, and FT2 with multi-positive contrastive learning.

    # The main job: no dataset argument = a DEMO on synthesised clips with a tiny seeded codec and a tiny model,
    # offline, a few minutes on CPU. Writes ./demo_data (audio, codec, codes) and ./demo_output (the model).
    python run_classification.py

    # FT1 on a real set (multi-label: the label column holds lists; single-label: strings). Selection (early
    # stopping, best checkpoint, decision thresholds) on the validation split; the test split once, at the end.
    accelerate launch run_classification.py --model_name_or_path <pretrained> --data_dir <audiofolder> \
        --label_column_name labels --max_duration 10 --do_train --do_eval --output_dir out \
        --eval_split_name validation --test_split_name test \
        --learning_rate 1e-4 --lr_scheduler_type constant --num_train_epochs 10 --eval_strategy epoch \
        --save_strategy epoch --load_best_model_at_end --metric_for_best_model mAP --early_stopping_patience 3

    # FT2: add the frozen models pretrained on C2..C4
    ... --mpc_positive_models <pretrained-C2> <pretrained-C3> <pretrained-C4> --mpc_alpha 0.95 --mpc_temperature 0.05

    python run_classification.py configs/ft_as20k_ft1.yaml          # the paper's recipes, see configs/

Data flags, codec and model flags are `run_mlm.py`'s (`training/data.py`); raw audio is tokenized once and cached.
The evaluation protocol (validation vs. test split, decision thresholds) is `training/evaluation.py`. The output
folder is a ready Hub repository: safetensors weights, config with `auto_map`, the feature extractor, the
remote-code files and a model card with the run's metrics (`--push_to_hub` uploads it).
"""

import logging
import sys
from dataclasses import dataclass, field

from transformers import EarlyStoppingCallback, HfArgumentParser, TrainingArguments, set_seed

from audioformer.model_cards.card import write_model_card
from audioformer.model_cards.publish import publish_from_training_args
from audioformer.modeling_audioformer import AudioFormerForAudioClassification
from audioformer.training.arguments import DataTrainingArguments, ModelArguments, parse_args
from audioformer.training.augmentation import (
    AugmentationEpochCallback,
    AugmentedCollator,
    CodeAugmentation,
    add_clip_index,
)
from audioformer.training.collators import DataCollatorForCodeClassification
from audioformer.training.data import check_max_positions, max_code_length, num_codebooks_of, prepare_code_datasets
from audioformer.training.demo_data import DEMO_NOTE, demo_classification_flags
from audioformer.training.evaluation import (
    EvaluationArguments,
    calibrate_if_needed,
    check_test_source,
    initial_thresholds,
    prepare_test_dataset,
    split_names,
)
from audioformer.training.labels import LOSSES, LabelSpace
from audioformer.training.loading import load_config, load_model
from audioformer.training.metrics import ClassificationMetrics, keep_logits
from audioformer.training.optimization import freeze_backbone
from audioformer.training.runs import (
    claim_output_dir,
    exit_if_stopped,
    finish_run,
    log_process,
    pin_memory_follows_device,
    resolve_checkpoint,
    run_main,
    setup_logging,
    training_args_summary,
)
from audioformer.training.sampling import inverse_frequency_weights
from audioformer.training.trainer import AudioClassificationTrainer, check_mpc_settings, load_positive_models


logger = logging.getLogger(__name__)

DATA_FLAGS = (
    "--dataset_name",
    "--data_dir",
    "--train_file",
    "--validation_file",
    "--data_files",
    "--tokenized_dataset",
)


@dataclass
class ClassificationArguments:
    """Labels, FT1 / FT2 losses, sampling and early stopping."""

    label_column_name: str = field(
        default="label",
        metadata={
            "help": "Label column: a string (or ClassLabel) per clip = single-label, a list per clip = multi-label."
        },
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
        metadata={
            "help": "Start from a fine-tuned model with other labels (e.g. FSD50K from AudioSet): new classifier."
        },
    )
    demo_dir: str = field(
        default="demo_data",
        metadata={"help": "Where the demo (no dataset argument) writes its audio, codec and codes."},
    )
    # Small-data fine-tuning and linear probing (training/augmentation.py, training/optimization.py); off by default.
    code_mask_probability: float = field(
        default=0.0,
        metadata={"help": "Replace this share of the input codes by <MASK> while training (authors' FSD50K: 0.1)."},
    )
    time_mask_probability: float = field(
        default=0.0,
        metadata={"help": "Mask spans of --time_mask_length frames covering about this share of each clip."},
    )
    time_mask_length: int = field(default=10, metadata={"help": "Frames per time-mask span (75 frames = 1 s)."})
    layerwise_lr_decay: float | None = field(
        default=None,
        metadata={"help": "Layer-wise learning-rate decay: each layer below the classifier trains at this factor."},
    )
    freeze_backbone: bool = field(
        default=False, metadata={"help": "Linear probing: train only the classifier on the frozen backbone."}
    )
    mixup_alpha: float = field(
        default=0.0,
        metadata={"help": "Mixup on the input embeddings while training, lam ~ Beta(alpha, alpha); 0 = off (FT1)."},
    )
    classifier_batch_norm: bool = field(
        default=False,
        metadata={
            "help": "Standardise the pooled features before the classifier (BatchNorm without affine, as MAE's "
            "linear probes): what lets a probe, then fine-tuning, keep a pretrained model's features "
            "(config.classifier_batch_norm)."
        },
    )

    def __post_init__(self):
        if self.loss is not None and self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {self.loss!r}.")
        check_mpc_settings(self.mpc_alpha, self.mpc_temperature)
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"--early_stopping_patience must be >= 1, got {self.early_stopping_patience}.")
        self.augmentation(seed=0)  # raises on bad masking flags before any work
        if self.layerwise_lr_decay is not None and not 0.0 < self.layerwise_lr_decay <= 1.0:
            raise ValueError(f"--layerwise_lr_decay must be in (0, 1], got {self.layerwise_lr_decay}.")
        if self.mixup_alpha < 0:
            raise ValueError(f"--mixup_alpha must be >= 0 (0 = off), got {self.mixup_alpha}.")
        if self.mixup_alpha and self.mpc_positive_models:
            raise ValueError("--mixup_alpha is for FT1: FT2's positive models would read the clips unmixed.")

    def augmentation(self, seed: int) -> CodeAugmentation:
        return CodeAugmentation(
            code_mask_probability=self.code_mask_probability,
            time_mask_probability=self.time_mask_probability,
            time_mask_length=self.time_mask_length,
            seed=seed,
        )


def is_demo(argv: list[str]) -> bool:
    """No data source on the command line (and no config file): run the demo."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        return False
    return not any(arg.split("=")[0] in DATA_FLAGS for arg in argv)


def demo_argv(argv: list[str]) -> list[str]:
    """Writes the demo data and codec; returns the demo's flags followed by the user's (which win)."""
    demo_dir = ClassificationArguments.demo_dir
    for i, arg in enumerate(argv):
        if arg == "--demo_dir" and i + 1 < len(argv):
            demo_dir = argv[i + 1]
        elif arg.startswith("--demo_dir="):
            demo_dir = arg.split("=", 1)[1]
    print(
        f"[DEMO] No dataset given: running the demo in {demo_dir} (tiny seeded codec, tiny model).\n[DEMO] {DEMO_NOTE}"
    )
    return demo_classification_flags(demo_dir) + argv


def argument_parser() -> HfArgumentParser:
    return HfArgumentParser(
        (ModelArguments, DataTrainingArguments, ClassificationArguments, EvaluationArguments, TrainingArguments)
    )


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else list(argv)
    demo = is_demo(argv)
    if demo:
        argv = demo_argv(argv)
    model_args, data_args, cls_args, eval_args, training_args = parse_args(argument_parser(), argv)

    setup_logging(training_args, logger)
    pin_memory_follows_device(training_args)
    log_process(training_args, logger)
    if cls_args.early_stopping_patience is not None:
        if training_args.eval_strategy == "no":
            raise ValueError("--early_stopping_patience needs evaluations: set --eval_strategy epoch (or steps).")
        if training_args.metric_for_best_model is None:
            raise ValueError("--early_stopping_patience needs --metric_for_best_model (e.g. mAP or accuracy).")
    check_test_source(data_args, eval_args)
    claim_output_dir(training_args, model_args)  # locked, writable, room for a checkpoint: before any work
    checkpoint = resolve_checkpoint(training_args)
    set_seed(training_args.seed)

    # 1. Data: labels checked on the source, then code ids (raw audio tokenized once and cached) and label ids.
    #    A fine-tuned checkpoint keeps its classes unless --ignore_mismatched_sizes.
    use_checkpoint_labels = model_args.model_name_or_path and not cls_args.ignore_mismatched_sizes
    checkpoint_config = load_config(model_args) if use_checkpoint_labels else None

    def check_labels(splits):
        LabelSpace.from_datasets(splits, cls_args.label_column_name, checkpoint_config).resolve_loss(cls_args.loss)

    code_datasets, feature_extractor = prepare_code_datasets(
        model_args, data_args, training_args, check_splits=check_labels, label_column_name=cls_args.label_column_name
    )
    if eval_args.has_test:  # the test split is tokenized and checked now, before any training, but used once
        code_datasets["test"] = prepare_test_dataset(
            model_args, data_args, training_args, eval_args, check_splits=check_labels
        )
    labels = LabelSpace.from_datasets(code_datasets, cls_args.label_column_name, checkpoint_config, warn=False)
    code_datasets = labels.add_label_ids(code_datasets)
    label_kwargs = labels.config_kwargs(cls_args.loss)
    if training_args.do_train:  # a fine-tuned model's thresholds are recalibrated at the end
        label_kwargs["decision_thresholds"] = None
    if cls_args.classifier_batch_norm:  # unset: a checkpoint's own choice stands
        label_kwargs["classifier_batch_norm"] = True
    config = load_config(model_args, num_codebooks=num_codebooks_of(code_datasets), **label_kwargs)
    max_length = max_code_length(model_args, feature_extractor)
    check_max_positions(code_datasets, config, max_length)

    # 2. Models: the anchor (an MLM checkpoint's head is dropped, the classifier is new) and, for FT2, positives.
    model = load_model(
        AudioFormerForAudioClassification, model_args, config, ignore_mismatched_sizes=cls_args.ignore_mismatched_sizes
    )
    if cls_args.freeze_backbone:
        freeze_backbone(model)
    positive_models = None
    if cls_args.mpc_positive_models:
        positive_models = load_positive_models(
            cls_args.mpc_positive_models,
            config,
            cls_args.mpc_positive_codebooks,
            cache_dir=model_args.cache_dir,
            token=model_args.token,
        )
        logger.info(
            "FT2: %d frozen positive model(s) on codebook rows %s, alpha=%s, tau=%s",
            len(positive_models),
            [p.config.read_codebooks for p in positive_models],
            cls_args.mpc_alpha,
            cls_args.mpc_temperature,
        )

    collator = DataCollatorForCodeClassification(
        # FT2 and a fused model read several rows: all are kept, each model picks its own.
        codebook_index=None if positive_models or config.is_fused else config.codebook_index,
        label_column="label_ids",
        num_labels=len(labels.names) if labels.multi_label else None,
        max_length=max_length,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
        pad_token_id=config.pad_token_id,
    )
    train_dataset = code_datasets["train"] if training_args.do_train else None
    sample_weights = None
    if cls_args.weighted_sampling and train_dataset is not None:
        # the Arrow column, not a list of 2M Python lists: computed in a few vectorised passes
        label_ids = train_dataset.select_columns(["label_ids"]).with_format("arrow")[:].column("label_ids")
        sample_weights = inverse_frequency_weights(label_ids, len(labels.names))
    augmentation = cls_args.augmentation(training_args.seed)
    if augmentation.enabled:
        collator = AugmentedCollator(collator, augmentation)
        train_dataset = add_clip_index(train_dataset) if train_dataset is not None else None

    # 3. Trainer. The upload happens at the end with the model card (Trainer.push_to_hub would replace the card).
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    compute_metrics = ClassificationMetrics(labels.multi_label, labels.id2label, initial_thresholds(config))
    callbacks = []
    if cls_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cls_args.early_stopping_patience))
    if augmentation.enabled:
        callbacks.append(AugmentationEpochCallback(collator))
    trainer = AudioClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=code_datasets["validation"] if training_args.do_eval else None,
        data_collator=collator,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=keep_logits,
        callbacks=callbacks,
        positive_models=positive_models,
        mpc_alpha=cls_args.mpc_alpha,
        mpc_temperature=cls_args.mpc_temperature,
        sample_weights=sample_weights,
        layerwise_lr_decay=cls_args.layerwise_lr_decay,
        mixup_alpha=cls_args.mixup_alpha,
    )

    # 4. Train (selecting on the validation split), calibrate the decision thresholds there, save a ready Hub folder,
    #    then evaluate: the validation split, and the test split once, with the selected model and thresholds.
    metrics = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        exit_if_stopped(trainer)  # SIGTERM / SIGUSR1: a checkpoint was saved, the run ends here
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        trainer.remove_callback(EarlyStoppingCallback)  # training is over: the evaluations below select nothing
    if labels.multi_label:  # fit the decision thresholds on the validation split, with the selected model
        thresholds = calibrate_if_needed(trainer, code_datasets, eval_args, training_args)
        if thresholds is not None:
            compute_metrics.thresholds = 0.0  # folded into the classifier's bias: logit 0 is each class's threshold
            if training_args.do_train:
                trainer.save_model()  # again, calibrated
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if "test" in code_datasets:
        test_metrics = trainer.evaluate(code_datasets["test"], metric_key_prefix="test")
        trainer.log_metrics("test", test_metrics)
        trainer.save_metrics("test", test_metrics)
        metrics.update(test_metrics)
    splits = split_names(data_args, training_args, eval_args)
    logger.info("eval_* metrics: %s; test_* metrics: %s", splits["eval"], splits.get("test", "no test split"))
    if trainer.is_world_process_zero():
        if not training_args.do_train:
            trainer.save_model()
        feature_extractor.save_pretrained(training_args.output_dir)
        write_card(training_args, model_args, data_args, cls_args, metrics, trainer, compute_metrics, demo, splits)
        if push_to_hub:
            publish_from_training_args(training_args)
    if demo and trainer.is_world_process_zero():
        name = "test_mAP" if labels.multi_label else "test_accuracy"
        print(
            f"[DEMO] {name} = {metrics.get(name, float('nan')):.4f} on {len(code_datasets['test'])} held-out "
            f"synthesised test clips, with the model selected on {len(code_datasets['validation'])} validation "
            f"clips ({len(labels.names)} classes: chance {1 / len(labels.names):.2f}); model in "
            f"{training_args.output_dir}"
        )
    finish_run(trainer)
    return metrics


def write_card(training_args, model_args, data_args, cls_args, metrics, trainer, compute_metrics, demo, splits):
    dataset_name = data_args.dataset_name or data_args.data_dir or data_args.train_file or data_args.tokenized_dataset
    if demo:
        dataset_name = "synthesised demo clips (training/demo_data.py), NOT real audio"
    summary = training_args_summary(training_args)
    summary["fine_tuning"] = "FT2 (MPC)" if cls_args.mpc_positive_models else "FT1"
    if cls_args.mpc_positive_models:
        summary.update(mpc_alpha=cls_args.mpc_alpha, mpc_temperature=cls_args.mpc_temperature)
    small_data = (
        "code_mask_probability",
        "time_mask_probability",
        "layerwise_lr_decay",
        "freeze_backbone",
        "mixup_alpha",
        "classifier_batch_norm",
    )
    summary.update({name: getattr(cls_args, name) for name in small_data if getattr(cls_args, name)})
    if cls_args.time_mask_probability:
        summary["time_mask_length"] = cls_args.time_mask_length
    return write_model_card(
        training_args.output_dir,
        task="audio-classification",
        metrics=metrics,
        dataset_name=dataset_name,
        base_model=model_args.model_name_or_path,
        training_args=summary,
        log_history=trainer.state.log_history,
        per_class_ap=compute_metrics.per_class_ap,
        split_names=splits,
    )


if __name__ == "__main__":
    run_main(main)
