"""
A step that never ends because another rank is hung (SIGSTOP, a dead GPU, a stuck file system) ends the job after
--ddp_timeout seconds, on every backend.

NCCL enforces the process-group timeout itself (its watchdog aborts the communicator); gloo, the CPU backend, does
not bound DDP's gradient all-reduce: with one rank stopped, the other waited in `backward` for as long as it was
left (140 s measured with --ddp_timeout 20, docs/fault-tolerance.md). `StepWatchdog` times each optimizer step of a
multi-process run (armed at `on_step_begin`, disarmed at `on_step_end`: evaluation and checkpoint saves between steps
are not timed) and, past --ddp_timeout, logs one line naming the rank and the step and ends the process, so that the
launcher stops the other ranks and the job can be restarted with `--resume_from_checkpoint last`.
"""

import logging
import os
import threading
import time

from transformers import TrainerCallback


logger = logging.getLogger(__name__)

EXIT_STATUS = 124  # as timeout(1)


class StepWatchdog(TrainerCallback):
    """Ends this process when one optimizer step takes longer than `timeout` seconds (see the module docstring)."""

    def __init__(self, timeout: float, rank: int, poll: float = 1.0):
        self.timeout, self.rank, self.poll = float(timeout), rank, poll
        self._deadline, self._step = None, None
        self._thread = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step, self._deadline = state.global_step + 1, time.monotonic() + self.timeout
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="audioformer-step-watchdog", daemon=True)
            self._thread.start()

    def on_step_end(self, args, state, control, **kwargs):
        self._deadline = None

    def on_train_end(self, args, state, control, **kwargs):
        self._deadline = None

    def _watch(self):
        while True:
            time.sleep(self.poll)
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                logger.error(
                    "rank %d: step %d has not finished after %.0f s (--ddp_timeout): another rank is hung or dead. "
                    "Ending this one so that the job stops; resume with --resume_from_checkpoint last.",
                    self.rank,
                    self._step,
                    self.timeout,
                )
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(EXIT_STATUS)


__all__ = ["EXIT_STATUS", "StepWatchdog"]
