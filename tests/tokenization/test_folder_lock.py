"""Tests of tokenization/folder_lock.py: one run per output folder, stale locks of killed runs, writable folders."""

import os
import socket

import pytest

from audioformer.tokenization import folder_lock
from audioformer.tokenization.folder_lock import (
    LOCK_FILE,
    FolderInUseError,
    FolderLock,
    FolderNotWritableError,
    check_writable_folder,
)


def test_a_second_run_stops_at_once_naming_the_first(lock_holder, tmp_path):
    holder = lock_holder(tmp_path / "out")
    with pytest.raises(FolderInUseError) as raised:
        FolderLock(tmp_path / "out").acquire()
    message = str(raised.value)
    assert str(tmp_path / "out") in message and f"pid {holder.pid} on host {socket.gethostname()}" in message
    assert "testing" in message  # what the other run does there

    holder.communicate("\n", timeout=30)  # the holder ends normally: its lock file is removed
    assert not (tmp_path / "out" / LOCK_FILE).exists()
    with FolderLock(tmp_path / "out"):
        assert (tmp_path / "out" / LOCK_FILE).exists()
    assert not (tmp_path / "out" / LOCK_FILE).exists()


def test_the_lock_of_a_killed_run_is_taken_over(lock_holder, tmp_path, caplog):
    holder = lock_holder(tmp_path / "out")
    holder.kill()  # kill -9: no clean-up; the kernel drops its flock
    holder.wait()
    assert (tmp_path / "out" / LOCK_FILE).exists()  # left behind
    with caplog.at_level("WARNING", logger=folder_lock.__name__):
        lock = FolderLock(tmp_path / "out").acquire()
    assert f"left by pid {holder.pid}" in caplog.text and "no longer running" in caplog.text
    assert str(os.getpid()) in (tmp_path / "out" / LOCK_FILE).read_text()
    lock.release()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    outer = FolderLock(tmp_path).acquire()
    with FolderLock(tmp_path) as inner:  # e.g. library code locking the folder the script already holds
        assert inner is outer
    assert outer.held and (tmp_path / LOCK_FILE).exists()
    outer.release()
    assert not outer.held and not (tmp_path / LOCK_FILE).exists()


def test_unwritable_folders_fail_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(FolderNotWritableError, match="Cannot create the folder .*a_file/out"):
        check_writable_folder(tmp_path / "a_file" / "out", flag="--output_dir")
    with pytest.raises(FolderNotWritableError, match="Cannot create the folder"):
        FolderLock(tmp_path / "a_file" / "out").acquire()

    class Usage:
        free = 2**30

    monkeypatch.setattr(folder_lock.shutil, "disk_usage", lambda path: Usage())
    check_writable_folder(tmp_path / "ok", needed_bytes=2**29)
    with pytest.raises(FolderNotWritableError, match=r"--output_dir .*1.00 GiB free.* about 3.00 GiB"):
        check_writable_folder(tmp_path / "ok", needed_bytes=3 * 2**30, flag="--output_dir")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(FolderNotWritableError, match="--output_dir .*read_only is not writable"):
            check_writable_folder(folder, flag="--output_dir")
    finally:
        folder.chmod(0o755)
