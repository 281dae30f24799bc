"""
One run at a time per output folder, and a writable folder before any work starts.

    with FolderLock("out/"):   # FolderInUseError naming the other run (pid, host, start, command) if it is busy
        ...                    # write into out/

    check_writable_folder("out/", needed_bytes=10 * 2**30, flag="--output_dir")  # FolderNotWritableError

The lock is an advisory `fcntl.flock` on `<folder>/.audioformer.lock`, whose text names the holder. The kernel drops
a flock when its process ends, kill -9 included, so a lock file left by a killed run is recognised (nobody holds it)
and taken over with a warning naming that run; no pid guessing, and it works across hosts on file systems with
working flock (local disks, NFSv4). Within one process the lock is re-entrant (a nested `FolderLock` of a folder
this process holds is a no-op), so a run may lock its folder once and call library code that locks it again.
The training scripts lock their --output_dir, the pre-tokenizer (and so the scripts' tokenized cache) its output.
"""

import atexit
import getpass
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time


logger = logging.getLogger(__name__)

LOCK_FILE = ".audioformer.lock"  # "*.lock" is never published (model_cards/publish.py)
_HELD: dict[str, "FolderLock"] = {}  # real path of a folder -> the lock this process holds on it


class FolderInUseError(RuntimeError):
    """Another live run holds the folder's lock."""


class FolderNotWritableError(RuntimeError):
    """The folder cannot be created or written, or its disk lacks the room the run needs."""


class DiskFullError(FolderNotWritableError):
    """A write ran out of space (ENOSPC): the message names the folder, the bytes needed and free, and how to
    resume."""


def is_disk_full(err: BaseException) -> bool:
    """An OSError with errno ENOSPC, or an error whose text says so (safetensors' `SafetensorError` wraps it)."""
    import errno

    return getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err)


def disk_full_error(folder, what: str, needed_bytes: int | None, resume: str) -> DiskFullError:
    """The `DiskFullError` of a write into `folder` that ran out of space."""
    free = shutil.disk_usage(folder).free if os.path.isdir(folder) else 0
    needed = f"about {needed_bytes:,} bytes needed, " if needed_bytes else ""
    return DiskFullError(
        f"No space left on device in {folder} while {what} ({needed}{free:,} bytes free). Free some space, then "
        f"{resume}."
    )


def _holder_text(info: dict) -> str:
    if not info:
        return "an unknown run (its lock file is empty)"
    return (
        f"pid {info.get('pid')} on host {info.get('host')} (user {info.get('user')}, started {info.get('started')}, "
        f"command: {info.get('command')})"
    )


def _read_info(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode("utf-8", errors="replace")
    try:
        return json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"pid": "?", "host": "?", "command": text[:200]}


class FolderLock:
    """
    Exclusive lock of `folder` for this process (created if missing). `acquire()` raises `FolderInUseError` at once
    if another live process holds it, `FolderNotWritableError` if the lock file cannot be written.

    Args:
        folder: the folder to lock.
        purpose: what the run does there, recorded in the lock file and shown to a run that finds it busy.
    """

    def __init__(self, folder, purpose: str = ""):
        self.folder = os.fspath(folder)
        self.purpose = purpose
        self.path = os.path.join(self.folder, LOCK_FILE)
        self._fd: int | None = None
        self._depth = 0

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # Windows: no flock; run unlocked rather than not at all
            logger.warning("No fcntl on this platform: %s is not locked against other runs.", self.folder)
            return self
        _make_folder(self.folder)
        key = os.path.realpath(self.folder)
        held = _HELD.get(key)
        if held is not None:
            held._depth += 1
            return held
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise FolderNotWritableError(f"Cannot write to {self.folder}: {err}.") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read_info(fd)
                os.close(fd)
                raise FolderInUseError(
                    f"{self.folder} is in use by another run: {_holder_text(info)}"
                    f"{', ' + info['purpose'] if info.get('purpose') else ''}. Wait until it ends, or use another "
                    f"folder. (If that run is gone, its lock is released by the system: {self.path})"
                ) from None
            # The holder may have released (unlinked) the file between our open and flock: we then hold a lock on
            # a file nobody else will see, so open the path again.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        previous = _read_info(fd)
        if previous:
            logger.warning(
                "Taking over %s: its lock was left by %s, which is no longer running (killed?). Files it was writing "
                "there may be incomplete; they are checked before reuse.",
                self.folder,
                _holder_text(previous),
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": _user(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv)[:500],
            "purpose": self.purpose,
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd, self._depth = fd, 1
        _HELD[key] = self
        atexit.register(self._release_at_exit)  # a run that ends (or raises) without releasing leaves no lock file
        return self

    def _release_at_exit(self) -> None:
        self._depth = min(self._depth, 1)
        self.release()

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        import fcntl

        _HELD.pop(os.path.realpath(self.folder), None)
        try:  # unlink while still holding the lock: a waiting opener then sees another inode and opens again
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        atexit.unregister(self._release_at_exit)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        held = self.acquire()
        self._entered = held
        return held

    def __exit__(self, *exc) -> None:
        self._entered.release()


def held_lock(folder) -> FolderLock | None:
    """The lock this process holds on `folder`, or None."""
    return _HELD.get(os.path.realpath(os.fspath(folder)))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def _make_folder(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise FolderNotWritableError(f"Cannot create the folder {folder}: {err}.") from err


def check_writable_folder(
    folder, needed_bytes: int | None = None, flag: str = "the output folder", what: str = "one checkpoint"
) -> None:
    """
    Creates `folder` if needed, writes and deletes a probe file in it, and checks that its disk has `needed_bytes`
    free (`what` says for what). Raises `FolderNotWritableError` naming `flag`, the folder and the cause: before any
    work, not at the first save.
    """
    folder = os.fspath(folder)
    _make_folder(folder)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-") as probe:
            probe.write(b"0")
            probe.flush()
    except OSError as err:
        raise FolderNotWritableError(f"{flag} {folder} is not writable: {err}. Choose another folder.") from err
    if needed_bytes:
        free = shutil.disk_usage(folder).free
        if free < needed_bytes:
            raise FolderNotWritableError(
                f"{flag} {folder}: its disk has {free / 2**30:.2f} GiB free, but the run needs about "
                f"{needed_bytes / 2**30:.2f} GiB ({free:,} bytes free, {needed_bytes:,} needed for {what}). Free "
                "some space or choose another folder."
            )


__all__ = [
    "DiskFullError",
    "FolderInUseError",
    "FolderLock",
    "FolderNotWritableError",
    "check_writable_folder",
    "disk_full_error",
    "held_lock",
    "is_disk_full",
]
