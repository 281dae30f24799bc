"""
Preemption: SIGTERM (SLURM's and spot instances' notice before SIGKILL) or SIGUSR1 (`sbatch --signal`) ends a run
with one complete checkpoint instead of losing everything since the last save.

The handler only records the signal. After each optimizer step every process shares what it received (one
all-reduce of one number), so that all of them stop after the same step even when only one was signalled; then
they save one checkpoint together (`AtomicCheckpointTrainer`) and the script exits with status 128 + the signal's
number, the status of a process ended by that signal, so that a scheduler or a shell chain sees an unfinished run.
A second signal while the checkpoint is written ends the process at once (the default action).
"""

import signal
import threading

import torch


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignals:
    """Records SIGTERM / SIGUSR1 while installed (`with StopSignals() as stop:`); `stop.agreed(device)` is the
    signal any process of the group received (collective: every process must call it at the same point)."""

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = signals
        self.received: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:  # a second notice: do what the signal does by default
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.received = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers can only be set from there
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def agreed(self, device) -> int | None:
        """The signal received by any process (the highest number if several), or None; one all-reduce."""
        received = self.received or 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([received], dtype=torch.int64, device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            received = int(flag.item())
        return received or None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_status(signum: int) -> int:
    return 128 + int(signum)


__all__ = ["STOP_SIGNALS", "StopSignals", "exit_status", "signal_name"]
