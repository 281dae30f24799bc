"""
The processes of a run, as every multi-process job of the project (the pre-tokenizer, both training scripts) sees
them: the accelerate process state, a barrier that raises one process's error on every process, the claim of an
output folder (its lock and a writability check) and a clean exit from the process group.
"""

import logging
import time

import torch

from .folder_lock import DiskFullError, FolderInUseError, FolderLock, FolderNotWritableError, check_writable_folder


logger = logging.getLogger(__name__)

# Errors shared across processes keep their type (a ValueError is bad input, the folder errors name another run).
_SHARED_ERRORS = {cls.__name__: cls for cls in (ValueError, FolderInUseError, FolderNotWritableError, DiskFullError)}


def process_state():
    """The accelerate process state. Without a GPU, processes started by `accelerate launch --multi_gpu` (or
    torchrun) join a gloo (MULTI_CPU) group instead of each running alone."""
    from accelerate import PartialState

    if PartialState._shared_state:
        return PartialState()
    return PartialState(cpu=not torch.cuda.is_available())


def wait_for_everyone_or_raise(state, error: Exception | None = None):
    """
    `state.wait_for_everyone()` that also shares failures. Every process calls it with the exception it caught
    since the last call (or None); if any process failed, every process raises the same error (a ValueError for
    bad input, the folder lock's errors as themselves, else a RuntimeError) instead of the others waiting at the
    next barrier until the timeout.
    """
    message = None if error is None else (type(error).__name__, str(error))
    if state.num_processes > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        messages = [None] * state.num_processes
        torch.distributed.all_gather_object(messages, message)
        failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
    else:  # one process (or a backend without torch.distributed): nothing to share
        if error is not None:
            raise error
        state.wait_for_everyone()
        return
    if not failed:
        return
    rank, (kind, text) = failed[0]
    if kind in _SHARED_ERRORS:
        raise _SHARED_ERRORS[kind](text) from error
    raise RuntimeError(f"Pre-tokenization failed on process {rank}: {kind}: {text}") from error


def claim_output_folder(
    output_dir, state=None, flag: str = "The tokenized-dataset folder", wait_seconds: float = 0.0, poll: float = 2.0
) -> FolderLock | None:
    """Locks `output_dir` for this run on the main process and checks that it can be written; every process raises
    the same error (`FolderInUseError` naming the other run, `FolderNotWritableError`). While another run holds
    the folder it waits up to `wait_seconds` (a message when it starts waiting and every minute), every process
    polling together, so that none of them sits at a barrier past the process-group timeout. Returns the main
    process's lock (None elsewhere)."""
    state = state or process_state()
    started, last_message = time.monotonic(), None
    while True:
        lock, error, busy = None, None, False
        try:
            if state.is_main_process:
                try:
                    lock = FolderLock(output_dir, purpose="pre-tokenizing audio").acquire()
                except FolderInUseError as err:
                    waited = time.monotonic() - started
                    if waited >= wait_seconds:
                        raise (FolderInUseError(f"{err} (waited {waited:.0f} s)") if wait_seconds else err) from None
                    busy = True
                    if last_message is None or time.monotonic() - last_message >= 60:
                        last_message = time.monotonic()
                        logger.warning(
                            "%s is being written by another run (%s); waiting for it to finish (%.0f of %.0f s) to "
                            "reuse its codes.",
                            output_dir,
                            str(err).split("in use by another run: ", 1)[-1].split(". Wait until", 1)[0],
                            waited,
                            wait_seconds,
                        )
                if lock is not None:
                    check_writable_folder(output_dir, flag=flag)
        except Exception as err:
            error = err
            if lock is not None:
                lock.release()
        wait_for_everyone_or_raise(state, error)
        if not _any_process(state, busy):
            return lock
        time.sleep(poll)


def _any_process(state, flag: bool) -> bool:
    """True if `flag` is true on any process (one all-gather)."""
    if state.num_processes > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        flags = [None] * state.num_processes
        torch.distributed.all_gather_object(flags, flag)
        return any(flags)
    return flag


def shutdown():
    """Leaves the process group cleanly: a gloo group left to the interpreter's exit can abort the process
    ("terminate called without an active exception") after all the work is done."""
    state = process_state()
    state.wait_for_everyone()
    state.destroy_process_group()
