"""What every run of the two scripts does around `Trainer`: logging, claiming the output folder, resuming, and the
summary for the card."""

import dataclasses
import logging
import os
import sys

import datasets

from audioformer.tokenization.folder_lock import FolderLock, check_writable_folder, held_lock
from audioformer.tokenization.processes import process_state, wait_for_everyone_or_raise

from .checkpointing import checkpoint_bytes, checkpoint_problem, find_resume_checkpoint
from .loading import load_config


logger = logging.getLogger(__name__)


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


def pin_memory_follows_device(training_args) -> None:
    """Pinned host memory only speeds up copies to an accelerator; on a CPU-only run torch's DataLoader warns about
    it at every epoch and evaluation, so it is switched off there."""
    if training_args.device.type == "cpu":
        training_args.dataloader_pin_memory = False


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


def claim_output_dir(training_args, model_args) -> None:
    """
    Before any work: locks --output_dir for this run (`tokenization.folder_lock`; a second run on it stops at once,
    naming this one), and checks that it is writable and that its disk has room for one checkpoint (see
    `checkpointing.checkpoint_bytes`), so that a run does not train for hours and then fail at its first save. The
    main process locks; every saving process checks; every process raises the same error. The lock is released by
    `finish_run`, or when the process ends.
    """
    error, lock = None, None
    output_dir = training_args.output_dir
    try:
        if training_args.process_index == 0:
            lock = FolderLock(output_dir, purpose=f"training ({os.path.basename(sys.argv[0]) or 'python'})")
            lock = lock.acquire()
        if training_args.should_save:  # the codebook row is checked against the data later; the size ignores it
            config = load_config(dataclasses.replace(model_args, codebook_index=None, input_codebooks=None))
            needed = checkpoint_bytes(config, training_args)
            check_writable_folder(output_dir, needed_bytes=needed, flag="--output_dir")
    except Exception as err:  # shared with every process, so that none of them waits at a barrier
        error = err
        if lock is not None and lock.held:
            lock.release()
    wait_for_everyone_or_raise(process_state(), error)


def finish_run(trainer) -> None:
    """How both scripts end, after rank 0 has written the card: every process waits, then leaves the process group
    (`Trainer.end`), and the output folder is released. A gloo group left to interpreter exit can abort a finished
    run ("terminate called without an active exception")."""
    trainer.accelerator.wait_for_everyone()
    trainer.end()
    lock = held_lock(trainer.args.output_dir)
    if lock is not None:
        lock.release()


def resolve_checkpoint(training_args) -> str | None:
    """
    --resume_from_checkpoint PATH, or "true" / "last" for the newest complete checkpoint in --output_dir (newer ones
    that a kill left incomplete are skipped, each named with the reason). A ValueError names what a given PATH lacks.
    """
    value = training_args.resume_from_checkpoint
    if value is None or not training_args.do_train:
        return None
    if value.lower() in ("true", "last"):
        last, skipped = find_resume_checkpoint(training_args.output_dir)
        for path, reason in skipped:
            logger.warning("--resume_from_checkpoint %s: skipping %s: %s.", value, path, reason)
        if last is None:
            raise ValueError(
                f"--resume_from_checkpoint {value}: no checkpoint to resume from in {training_args.output_dir} (no "
                f"complete checkpoint-* folder{f'; {len(skipped)} incomplete' if skipped else ''})."
            )
        (logger.warning if skipped else logger.info)("--resume_from_checkpoint %s: resuming from %s.", value, last)
        return last
    if not os.path.isdir(value):
        raise ValueError(f"--resume_from_checkpoint {value} is not a folder.")
    problem = checkpoint_problem(value)
    if problem is not None:
        raise ValueError(f"--resume_from_checkpoint {value} cannot be resumed from: {problem}.")
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
