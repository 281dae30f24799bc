"""
Checkpoints that are complete or absent, and `--resume_from_checkpoint last` that takes the newest complete one.

transformers 5.24's `Trainer._save_checkpoint` writes `checkpoint-N/` in place, file after file (4.36 staged it under
`tmp-checkpoint-N` and renamed it; 4.37 reverted that after rename races between nodes). A run killed during a save
leaves a `checkpoint-N` that `get_last_checkpoint` picks and that fails to resume (no trainer_state.json) or resumes
with a fresh optimizer (no optimizer.pt). Here:

- `AtomicCheckpointTrainer` lets Trainer write each checkpoint into `tmp-checkpoint-N/checkpoint-N/`; once every
  process has written its part, the saving process renames it to `checkpoint-N`. So a folder named `checkpoint-N`
  is always complete; a kill leaves only a `tmp-checkpoint-N`, which nothing reads and the next save replaces.
- `find_resume_checkpoint(output_dir)` is the newest `checkpoint-N` that holds a trainer state, weights and an
  optimizer state, and the reasons the newer ones were skipped (including checkpoints of other tools and older runs).
- `checkpoint_bytes(config, training_args)` estimates one checkpoint's size, for the disk check before a run.
"""

import json
import logging
import os
import re
import shutil

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from audioformer.modeling_audioformer import AudioFormerModel

from .preemption import StopSignals, signal_name


logger = logging.getLogger(__name__)

STAGING_PREFIX = "tmp-"
TRAINER_STATE = "trainer_state.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_STAGED = re.compile(rf"^{STAGING_PREFIX}{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class AtomicCheckpointTrainer(Trainer):
    """`Trainer` whose checkpoint folders are complete or absent (written under a temporary name, then renamed),
    and that stops after the current step with one checkpoint on SIGTERM / SIGUSR1 (`preemption.py`): then
    `stopped_by` is the signal's number and `train()` returns early."""

    _staging_dir: str | None = None  # while a checkpoint is written: the folder Trainer takes for the output folder
    _stop_signals: StopSignals | None = None  # while training
    _saved_step: int | None = None  # the step of the last checkpoint written
    stopped_by: int | None = None

    def train(self, *args, **kwargs):
        self.stopped_by = None
        with StopSignals() as self._stop_signals:
            try:
                return super().train(*args, **kwargs)
            finally:
                self._stop_signals = None

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, model, trial, *args, **kwargs) -> None:
        stop = self._stop_signals.agreed(self.args.device) if self._stop_signals is not None else None
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, model, trial, *args, **kwargs)
        if stop is None:
            return
        if self._saved_step != self.state.global_step:
            self._save_checkpoint(model, trial)
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)
        self.control.should_training_stop = True
        if self.stopped_by is None:
            self.stopped_by = stop
            logger.warning("%s received: stopping after step %d.", signal_name(stop), self.state.global_step)

    def _get_output_dir(self, trial) -> str:
        return self._staging_dir or super()._get_output_dir(trial)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if self._staging_dir is None:  # while staging, the push waits for the final folder (see _save_checkpoint)
            super()._push_from_checkpoint(checkpoint_folder)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        final = os.path.join(run_dir, name)
        staging = os.path.join(run_dir, f"{STAGING_PREFIX}{name}")
        staged = os.path.join(staging, name)
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # left by a save that was killed
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)  # every process writes its part into `staged`
        finally:
            self._staging_dir = None
        if self.state.best_model_checkpoint == staged:
            self.state.best_model_checkpoint = final
        self.accelerator.wait_for_everyone()
        if self.args.should_save and os.path.isdir(staged):
            self.state.save_to_json(os.path.join(staged, TRAINER_STATE))  # with the final path of the best model
            if os.path.isdir(final):  # an earlier run's checkpoint of the same step (Trainer would overwrite it)
                shutil.rmtree(final)
            os.rename(staged, final)
            os.rmdir(staging)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()
        self._saved_step = self.state.global_step
        if self.args.push_to_hub:
            super()._push_from_checkpoint(final)


def checkpoint_problem(path: str) -> str | None:
    """Why `path` cannot be resumed from (in words), or None if it holds a trainer state, weights and an optimizer
    state."""
    if not os.path.isdir(path):
        return "not a folder"
    if _STAGED.match(os.path.basename(path)):
        return "a save that was interrupted (it is renamed to checkpoint-N only when complete)"
    files = set(os.listdir(path))
    if TRAINER_STATE not in files:
        return f"no {TRAINER_STATE} (a save that was interrupted?)"
    try:
        with open(os.path.join(path, TRAINER_STATE)) as f:
            json.load(f)
    except (OSError, ValueError) as err:
        return f"{TRAINER_STATE} is unreadable ({err})"
    if not files & set(WEIGHT_FILES) and not any(f.startswith("pytorch_model_fsdp") for f in files):
        return f"no model weights (none of {', '.join(WEIGHT_FILES)})"
    if not any(f.startswith(("optimizer", "global_step")) for f in files):
        return "no optimizer state (optimizer.pt): resuming would restart the optimizer"
    return None


def find_resume_checkpoint(output_dir: str) -> tuple[str | None, list[tuple[str, str]]]:
    """
    The newest complete checkpoint of `output_dir` (by step), and the newer candidates skipped, as
    `[(folder, reason), ...]`: interrupted saves (`tmp-checkpoint-N`) and `checkpoint-N` folders that lack a file a
    resume needs (`checkpoint_problem`).
    """
    entries = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    candidates = []
    for entry in entries:
        match = _CHECKPOINT.match(entry) or _STAGED.match(entry)
        if match and os.path.isdir(os.path.join(output_dir, entry)):
            candidates.append((int(match.group(1)), not entry.startswith(STAGING_PREFIX), entry))
    skipped = []
    for _, _, entry in sorted(candidates, reverse=True):
        path = os.path.join(output_dir, entry)
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def checkpoint_bytes(config, training_args) -> int:
    """
    About how many bytes one checkpoint of a model with `config` takes: float32 weights, plus AdamW's two moments
    unless --save_only_model (or --save_strategy no, where only the final weights are written). The model is built
    on the meta device, so nothing is allocated.
    """
    with torch.device("meta"):
        num_parameters = AudioFormerModel(config).num_parameters()
    saves_optimizer = training_args.save_strategy != "no" and not training_args.save_only_model
    return num_parameters * (12 if saves_optimizer else 4)


__all__ = ["AtomicCheckpointTrainer", "checkpoint_bytes", "checkpoint_problem", "find_resume_checkpoint"]
