"""What every run of the two scripts does around `Trainer`: logging, resuming, and the summary for the card."""

import logging
import os
import sys

import datasets


def setup_logging(training_args, script_logger: logging.Logger):
    """The scripts' logging: timestamped lines on stdout, at the process's log level (quieter on non-main ranks)
    for `script_logger`, `datasets` and `transformers`."""
    import transformers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    script_logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


def log_process(training_args, script_logger: logging.Logger):
    """One line per process, the same in both scripts: rank, world size, device, distribution and precision; the
    full training arguments at info level."""
    precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"
    script_logger.warning(
        "Process rank: %d, world size: %d, device: %s, distributed: %s, precision: %s",
        training_args.process_index,
        training_args.world_size,
        training_args.device,
        training_args.parallel_mode.value,
        precision,
    )
    script_logger.info("Training parameters %s", training_args)


def finish_run(trainer) -> None:
    """How both scripts end, after rank 0 has written the card: every process waits, then leaves the process group
    (`Trainer.end`). A gloo group left to interpreter exit can abort a finished run ("terminate called without an
    active exception")."""
    trainer.accelerator.wait_for_everyone()
    trainer.end()


def resolve_checkpoint(training_args) -> str | None:
    """--resume_from_checkpoint PATH, or "true" / "last" for the newest checkpoint in --output_dir."""
    value = training_args.resume_from_checkpoint
    if value is None or not training_args.do_train:
        return None
    if value.lower() in ("true", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise ValueError(
                f"--resume_from_checkpoint {value}: no checkpoint-* folder in {training_args.output_dir}."
            )
        return last
    if not os.path.isdir(value):
        raise ValueError(f"--resume_from_checkpoint {value} is not a folder.")
    return value


def training_args_summary(
    training_args,
    keys=(
        "learning_rate",
        "num_train_epochs",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "seed",
        "bf16",
    ),
) -> dict:
    """A few hyper-parameters for the model card, plus the world size."""
    summary = {k: getattr(training_args, k) for k in keys if hasattr(training_args, k)}
    summary["world_size"] = training_args.world_size
    return summary
