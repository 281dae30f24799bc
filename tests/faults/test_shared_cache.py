"""Defect 8 of issue 23: two trainings on the same raw audio share the default tokenized cache; the second stopped
at once with `FolderInUseError` on a hashed folder it never named. Now it waits for the first to finish the cache
(a message while it waits, a timeout), then reuses the codes."""

import threading
import time

import pytest
from conftest import tokenize

from audioformer.tokenization.folder_lock import FolderInUseError
from audioformer.tokenization.processes import claim_output_folder
from audioformer.training.arguments import DataTrainingArguments


def test_a_second_run_waits_for_the_cache_then_reuses_it(clips, feature_extractor, tmp_path, lock_holder, caplog):
    out = tmp_path / "cache"
    holder = lock_holder(out)  # the first run of the sweep, tokenizing
    release = threading.Timer(3.0, lambda: holder.communicate("\n"))
    release.start()
    started = time.monotonic()
    with caplog.at_level("WARNING"):
        lock = claim_output_folder(out, wait_seconds=60, poll=0.2)
    waited = time.monotonic() - started
    release.join()
    lock.release()
    assert 2.5 < waited < 30
    assert f"{out} is being written by another run (pid {holder.pid}" in caplog.text
    assert "waiting for it to finish" in caplog.text


def test_the_wait_ends_with_the_other_run_named(tmp_path, lock_holder):
    holder = lock_holder(tmp_path / "cache")
    with pytest.raises(FolderInUseError, match=rf"in use by another run: pid {holder.pid} .*\(waited [12] s\)"):
        claim_output_folder(tmp_path / "cache", wait_seconds=1, poll=0.2)


def test_the_scripts_wait_by_default_and_pretokenize_waits_when_asked(clips, feature_extractor, tmp_path, lock_holder):
    assert DataTrainingArguments(data_dir=clips).tokenized_cache_wait == 3600
    out = tmp_path / "codes"
    holder = lock_holder(out)
    threading.Timer(2.0, lambda: holder.communicate("\n")).start()
    codes = tokenize(clips, feature_extractor, out, wait_for_folder=60)
    assert len(codes["train"]) == 12
