"""
Checkpoints that are complete or absent, and `--resume_from_checkpoint last` that takes the newest complete one.

transformers 5.24's `Trainer._save_checkpoint` writes `checkpoint-N/` in place, file after file (4.36 staged it under
`tmp-checkpoint-N` and renamed it; 4.37 reverted that after rename races between nodes). A run killed during a save
leaves a `checkpoint-N` that `get_last_checkpoint` picks and that fails to resume (no trainer_state.json) or resumes
with a fresh optimizer (no optimizer.pt). Here:

- `AtomicCheckpointTrainer` lets Trainer write each checkpoint into `tmp-checkpoint-N/checkpoint-N/`; once every
  process has written its part, the saving process renames it to `checkpoint-N`. So a folder named `checkpoint-N`
  is always complete; a kill leaves only a `tmp-checkpoint-N`, which nothing reads and the next save replaces.
- Before the rename every file is fsynced and listed with its size and XXH3-64 checksum in
  `checkpoint_manifest.json`, written last (then the folders are fsynced), so that neither a kill nor an OS crash
  publishes a torn file.
- `find_resume_checkpoint(output_dir)` is the newest `checkpoint-N` that holds a trainer state, weights and an
  optimizer state whose files match its manifest, and the reasons the newer ones were skipped (naming the torn
  file; including checkpoints of other tools and older runs).
- `run_bytes(config, training_args, codec)` estimates what a run writes (one checkpoint with its `codec/` and
  remote code, and the final folder), for the disk check before a run.
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
from audioformer.tokenization.code_integrity import file_digest, listed_files_problem
from audioformer.tokenization.folder_lock import disk_full_error, is_disk_full
from audioformer.tokenization.processes import process_state, wait_for_everyone_or_raise

from .preemption import StopSignals, signal_name
from .watchdog import StepWatchdog


logger = logging.getLogger(__name__)

STAGING_PREFIX = "tmp-"
TRAINER_STATE = "trainer_state.json"
MANIFEST = "checkpoint_manifest.json"  # written last: every other file's size and checksum (XXH3-64)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_STAGED = re.compile(rf"^{STAGING_PREFIX}{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class AtomicCheckpointTrainer(Trainer):
    """`Trainer` whose checkpoint folders are complete or absent (written under a temporary name, then renamed),
    and that stops after the current step with one checkpoint on SIGTERM / SIGUSR1 (`preemption.py`): then
    `stopped_by` is the signal's number and `train()` returns early. With several processes, a step that takes
    longer than --ddp_timeout ends the process (`watchdog.py`)."""

    _staging_dir: str | None = None  # while a checkpoint is written: the folder Trainer takes for the output folder
    _stop_signals: StopSignals | None = None  # while training
    _saved_step: int | None = None  # the step of the last checkpoint written
    stopped_by: int | None = None

    def train(self, *args, **kwargs):
        self.stopped_by = None
        if self.args.world_size > 1 and not any(isinstance(c, StepWatchdog) for c in self.callback_handler.callbacks):
            self.add_callback(StepWatchdog(self.args.ddp_timeout, self.args.process_index))
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

    def _raise_disk_full(self, share, error, staging, name, run_dir) -> None:
        """After a part of a save, on every process: raises the error any process met (a full disk as one
        `DiskFullError` naming the folder, the bytes needed and free, and how to resume, the staging folder
        deleted to give the space back)."""
        if error is not None and is_disk_full(error):
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
            error = disk_full_error(
                run_dir,
                f"saving {name}",
                folder_bytes(os.path.join(run_dir, _newest_checkpoint(run_dir)))
                if _newest_checkpoint(run_dir)
                else None,
                "resume with --resume_from_checkpoint last (the newest complete checkpoint is kept)",
            )
        share(process_state(), error)

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
        error = None
        try:
            super()._save_checkpoint(model, trial)  # every process writes its part into `staged`
        except Exception as err:  # shared below: the other processes must not wait at the barrier for the timeout
            error = err
        finally:
            self._staging_dir = None
        if self.state.best_model_checkpoint == staged:
            self.state.best_model_checkpoint = final
        self._raise_disk_full(wait_for_everyone_or_raise, error, staging, name, run_dir)
        try:
            if self.args.should_save and os.path.isdir(staged):
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE))  # with the final path of the best model
                write_manifest(staged)  # fsyncs every file and folder: the rename below publishes whole files only
                if os.path.isdir(final):  # an earlier run's checkpoint of the same step (Trainer would overwrite it)
                    shutil.rmtree(final)
                os.rename(staged, final)
                os.rmdir(staging)
                _fsync_dir(run_dir)
                rotate_checkpoints(
                    output_dir=run_dir,
                    save_total_limit=self.args.save_total_limit,
                    best_model_checkpoint=self.state.best_model_checkpoint,
                    use_mtime=True,
                )
        except Exception as err:
            error = err
        self._raise_disk_full(wait_for_everyone_or_raise, error, staging, name, run_dir)
        self._saved_step = self.state.global_step
        if self.args.push_to_hub:
            super()._push_from_checkpoint(final)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: str) -> dict:
    """
    Writes `folder/checkpoint_manifest.json`: every file below `folder` with its size and XXH3-64 checksum, after
    fsyncing each file, then the manifest, then every folder. A checkpoint counts as complete only if its manifest
    is there and every file matches it (`manifest_problem`). Returns the manifest.
    """
    files = {}
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            if relative == MANIFEST:
                continue
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            files[relative] = {"size": os.path.getsize(path), "xxh3_64": file_digest(path)}
    manifest = {"format": 1, "files": files}
    path = os.path.join(folder, MANIFEST)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    for root, _dirs, _ in os.walk(folder, topdown=False):
        _fsync_dir(root)
    return manifest


def manifest_problem(folder: str) -> str | None:
    """Why the files of `folder` do not match its manifest (naming the first file that does not), or None if they
    all do; None too for a checkpoint without a manifest (written before manifests, checked by name only)."""
    return listed_files_problem(folder, MANIFEST, full_paths=False)


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(folder) for n in names)


def _newest_checkpoint(run_dir: str) -> str | None:
    steps = [(int(m.group(1)), e) for e in os.listdir(run_dir) if (m := _CHECKPOINT.match(e))]
    return max(steps)[1] if steps else None


def checkpoint_problem(path: str) -> str | None:
    """Why `path` cannot be resumed from (in words), or None if it holds a trainer state, weights and an optimizer
    state, all whole (see `write_manifest`)."""
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
    return manifest_problem(path)


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
    About how many bytes one checkpoint's weights and optimizer state take: float32 weights, plus AdamW's two
    moments unless --save_only_model (or --save_strategy no, where only the final weights are written). The model is
    built on the meta device, so nothing is allocated. `run_bytes` adds what else a run writes.
    """
    with torch.device("meta"):
        num_parameters = AudioFormerModel(config).num_parameters()
    saves_optimizer = training_args.save_strategy != "no" and not training_args.save_only_model
    return num_parameters * (12 if saves_optimizer else 4)


# Trainer's small files of a checkpoint (trainer state, scheduler, RNG states, training_args.bin, configs, manifest):
# 25 KB for the tiny model, rounded up.
SMALL_FILES_BYTES = 256 << 10


def codec_bytes(codec_name_or_path: str) -> int:
    """What a copy of the codec (`codec/` in every checkpoint and in the final folder) takes: the sizes of a local
    codec's `config.json` and weights; for a Hub name, its float32 parameters (counted on the meta device from the
    cached config, or the 24 kHz EnCodec's)."""
    if os.path.isdir(codec_name_or_path):
        names = [n for n in os.listdir(codec_name_or_path) if n == "config.json" or n.endswith(".safetensors")]
        return sum(os.path.getsize(os.path.join(codec_name_or_path, n)) for n in names)
    from transformers import EncodecConfig, EncodecModel

    try:
        codec_config = EncodecConfig.from_pretrained(codec_name_or_path, local_files_only=True)
    except Exception:  # noqa: BLE001 - offline and not cached: the paper's codec
        codec_config = EncodecConfig()
    with torch.device("meta"):
        return 4 * EncodecModel(codec_config).num_parameters()


def remote_code_bytes() -> int:
    """The remote-code files a saved folder holds (the model's, the configuration's and the feature extractor's
    modules): the sizes of their sources in this installation."""
    import audioformer.modeling_audioformer as modeling
    import audioformer.tokenization.feature_extraction_audioformer as feature_extraction

    folder = os.path.dirname(modeling.__file__)
    sources = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".py")]
    sources.append(feature_extraction.__file__)
    return sum(os.path.getsize(path) for path in sources)


def run_bytes(config, training_args, codec_name_or_path: str | None) -> int:
    """
    About how many bytes a run needs free: one checkpoint (weights and optimizer state, `codec/`, the remote code,
    Trainer's small files) unless --save_strategy no, plus the final folder (float32 weights, `codec/`, the remote
    code). Every checkpoint keeps its own copy of the codec, so that a checkpoint copied elsewhere still loads.
    """
    shared = (codec_bytes(codec_name_or_path) if codec_name_or_path else 0) + remote_code_bytes() + SMALL_FILES_BYTES
    with torch.device("meta"):
        final = 4 * AudioFormerModel(config).num_parameters() + shared
    if training_args.save_strategy == "no":
        return final
    return checkpoint_bytes(config, training_args) + shared + final


__all__ = [
    "AtomicCheckpointTrainer",
    "checkpoint_bytes",
    "checkpoint_problem",
    "codec_bytes",
    "find_resume_checkpoint",
    "manifest_problem",
    "run_bytes",
    "write_manifest",
]
