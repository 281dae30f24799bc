#!/usr/bin/env python
# Copyright 2026 The AudioFormer Authors.
# Licensed under the Apache License, Version 2.0.
"""
Masked-LM pretraining of AudioFormer on EnCodec codes (paper sections 3.2 and 4.2): one model per codebook,
25% of the code tokens masked, cross-entropy on the masked tokens. With `--input_codebooks 0 1 2 3`, one fused
model reads every codebook of a frame: whole frames are masked and each codebook's code is predicted by its own head
(the loss is the mean over codebooks; evaluation reports `accuracy_c1` .. per codebook and their mean `accuracy`).

    python run_mlm.py configs/mlm_tiny_demo.yaml                       # all flags in one .json / .yaml file
    python run_mlm.py --data_dir clips/ --config_overrides "hidden_size=64,num_hidden_layers=2" \
        --codebook_index 0 --output_dir out --do_train --do_eval
    accelerate launch --num_processes 8 run_mlm.py configs/mlm_audioset2m_c1.yaml     # DDP

Raw audio is tokenized once (cached, see `training/data.py`); or pass `--tokenized_dataset` made by
`python -m audioformer.tokenization.tokenize_dataset`.
The output folder holds a safetensors checkpoint, its config (with
`auto_map`), the feature extractor and a model card.
"""

import functools
import logging
import math
from dataclasses import dataclass, field

import numpy as np
from transformers import HfArgumentParser, TrainingArguments, set_seed

from audioformer.model_cards.card import write_model_card
from audioformer.model_cards.publish import publish_from_training_args
from audioformer.modeling_audioformer import AudioFormerForMaskedLM
from audioformer.training.arguments import DataTrainingArguments, ModelArguments, parse_args
from audioformer.training.checkpointing import AtomicCheckpointTrainer
from audioformer.training.collators import IGNORE_INDEX, CollatorEpochCallback, DataCollatorForCodeMLM
from audioformer.training.data import check_max_positions, max_code_length, num_codebooks_of, prepare_code_datasets
from audioformer.training.loading import load_config, load_model
from audioformer.training.runs import (
    claim_output_dir,
    finish_run,
    log_process,
    pin_memory_follows_device,
    resolve_checkpoint,
    setup_logging,
    training_args_summary,
)


logger = logging.getLogger(__name__)


@dataclass
class MLMDataArguments(DataTrainingArguments):
    """The data flags of both scripts plus the masking ones."""

    mlm_probability: float = field(default=0.25, metadata={"help": "Share of code tokens masked (paper: 0.25)."})
    mask_replace_prob: float = field(
        default=1.0, metadata={"help": "Share of masked tokens replaced by <MASK>; BERT's 80/10/10 rule is 0.8."}
    )
    random_replace_prob: float = field(
        default=0.0, metadata={"help": "Share of masked tokens replaced by a random code; BERT's rule is 0.1."}
    )
    whole_run_masking: bool = field(
        default=False, metadata={"help": "Mask whole runs of repeated codes instead of single tokens."}
    )


def preprocess_logits_for_metrics(logits, labels):
    """Keeps only the predicted ids `(B, T)`, not the `(B, T, vocab)` logits, across the evaluation."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def compute_metrics(eval_pred, input_codebooks=None):
    """Masked-token accuracy; predictions and labels are `(N, T)` (padded with -100 across batches). A fused model's
    are `(N, T, K)`: the accuracy of each codebook (`accuracy_c<k + 1>` for codebook row k) and their mean."""
    predictions, labels = eval_pred.predictions, eval_pred.label_ids
    if input_codebooks is None:
        return {"accuracy": masked_accuracy(predictions, labels)}
    per_codebook = {
        f"accuracy_c{k + 1}": masked_accuracy(predictions[..., j], labels[..., j])
        for j, k in enumerate(input_codebooks)
    }
    return {"accuracy": float(np.mean(list(per_codebook.values()))), **per_codebook}


def masked_accuracy(predictions, labels) -> float:
    masked = labels != IGNORE_INDEX
    return float((predictions[masked] == labels[masked]).mean()) if masked.any() else float("nan")


def main(argv=None):
    parser = HfArgumentParser((ModelArguments, MLMDataArguments, TrainingArguments))
    model_args, data_args, training_args = parse_args(parser, argv)
    setup_logging(training_args, logger)
    pin_memory_follows_device(training_args)
    log_process(training_args, logger)
    # Fails on bad masking flags before the data is touched.
    masking_flags = dict(
        mlm_probability=data_args.mlm_probability,
        mask_replace_prob=data_args.mask_replace_prob,
        random_replace_prob=data_args.random_replace_prob,
        whole_run_masking=data_args.whole_run_masking,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
    )
    DataCollatorForCodeMLM(**masking_flags)

    claim_output_dir(training_args, model_args)  # locked, writable, room for a checkpoint: before any work
    checkpoint = resolve_checkpoint(training_args)
    set_seed(training_args.seed)

    # Data first: every check on the input runs before a model is built or a step is taken.
    code_datasets, feature_extractor = prepare_code_datasets(model_args, data_args, training_args)
    config = load_config(model_args, num_codebooks=num_codebooks_of(code_datasets))
    max_length = max_code_length(model_args, feature_extractor)  # --max_duration also cuts pre-tokenized codes
    check_max_positions(code_datasets, config, max_length)
    model = load_model(AudioFormerForMaskedLM, model_args, config)
    reads = " + ".join(f"C{k + 1}" for k in config.read_codebooks)
    logger.info("Pretraining on codebook %s; %d parameters", reads, model.num_parameters())

    code_datasets = code_datasets.select_columns(["input_ids"])  # labels, ids, ... of the source are not used
    train_dataset = code_datasets.get("train") if training_args.do_train else None
    eval_dataset = code_datasets.get("validation") if training_args.do_eval else None
    collator = DataCollatorForCodeMLM(
        codebook_index=config.codebook_index,
        input_codebooks=config.input_codebooks,  # a fused model: whole frames masked in every codebook
        pad_token_id=config.pad_token_id,
        mask_token_id=config.mask_token_id,
        max_length=max_length,
        seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
        **masking_flags,
    )  # seeded per clip and epoch: a resumed run masks exactly as the uninterrupted one

    # The upload happens at the end, with the model card (Trainer.push_to_hub would replace the card and upload
    # training_args.bin, a pickle).
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = AtomicCheckpointTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=feature_extractor,
        compute_metrics=functools.partial(compute_metrics, input_codebooks=config.input_codebooks)
        if training_args.do_eval
        else None,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics if training_args.do_eval else None,
        callbacks=[CollatorEpochCallback(collator)],
    )

    metrics = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()  # model.safetensors + config.json (auto_map) + preprocessor_config.json
        metrics = dict(train_result.metrics, train_samples=len(train_dataset))
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        eval_metrics["eval_samples"] = len(eval_dataset)
        eval_metrics["perplexity"] = math.exp(min(eval_metrics["eval_loss"], 700.0))
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    if training_args.do_train and trainer.is_world_process_zero():
        write_card(trainer, model_args, data_args, training_args, metrics)
        if push_to_hub:
            publish_from_training_args(training_args)
    finish_run(trainer)
    return metrics


def write_card(trainer, model_args, data_args, training_args, metrics):
    # eval_accuracy, and a fused model's eval_accuracy_c1 .. per codebook
    card_metrics = {k: float(v) for k, v in metrics.items() if k == "eval_loss" or k.startswith("eval_accuracy")}
    write_model_card(
        training_args.output_dir,
        task="fill-mask",
        metrics=card_metrics or None,
        dataset_name=data_args.dataset_name or data_args.data_dir or data_args.tokenized_dataset,
        base_model=model_args.model_name_or_path,
        training_args=training_args_summary(training_args),
        log_history=trainer.state.log_history,
    )


if __name__ == "__main__":
    main()
