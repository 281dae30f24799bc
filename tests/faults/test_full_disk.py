"""Defect 6 of issue 23: a full disk gave a raw `OSError: [Errno 28] No space left on device` naming no folder, the
split merge wrote straight into the final folder, and a checkpoint save died with a raw `SafetensorError`. The tests
fill a small tmpfs (skipped where mounting is not permitted)."""

import os

import pytest
from conftest import STEPS, fill_disk, global_step, mlm_args, run_mlm, run_mlm_filling_the_disk, tokenize

from audioformer.tokenization import tokenize_dataset as td
from audioformer.tokenization.folder_lock import DiskFullError, FolderNotWritableError


def test_pretokenizing_onto_a_too_small_disk_is_refused_before_it_starts(clips, tiny_codec_dir, small_disk):
    from audioformer.tokenization import AudioFormerFeatureExtractor

    feature_extractor = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir, max_duration=10.0)
    disk = small_disk(1)
    fill_disk(disk, leave_bytes=48_000)  # 15 clips x 10 s x 75 frames x 4 codebooks x 2 bytes = 90 KB at most
    out = str(disk / "codes")
    with pytest.raises(FolderNotWritableError, match=rf"{out}: its disk has .* bytes free, but the codes of 15 clips"):
        tokenize(clips, feature_extractor, out)
    assert not os.path.isdir(os.path.join(out, "_work"))


def test_running_out_of_space_names_the_folder_and_the_resume_finishes(
    clips,
    feature_extractor,
    finished,
    small_disk,
    monkeypatch,
):
    disk = small_disk(1)
    filler = fill_disk(disk, leave_bytes=24_000)  # room for the lock and a few shard files
    out = str(disk / "codes")
    with monkeypatch.context() as patch:
        patch.setattr(td, "output_bytes", lambda *args: 0)  # the estimate passes; the writes do not
        with pytest.raises(
            DiskFullError,
            match=rf"No space left on device in {out} while pre-tokenizing .* bytes free"
            r"\)\. Free some space, then rerun the same command: finished shards are kept",
        ):
            tokenize(clips, feature_extractor, out)
    assert not os.path.isdir(os.path.join(out, "train")) or not os.listdir(os.path.join(out, "train"))
    os.remove(filler)
    resumed = tokenize(clips, feature_extractor, out)
    assert resumed["train"]["input_ids"] == td.load_tokenized_dataset(finished)["train"]["input_ids"]


@pytest.mark.slow  # a run_mlm.py subprocess (or two)
def test_a_checkpoint_save_onto_a_full_disk_ends_with_one_line(codes_dir, tiny_codec_dir, small_disk):
    disk = small_disk(12)
    out = str(disk / "out")
    args = mlm_args(codes_dir, tiny_codec_dir, out, *STEPS)
    returncode, output = run_mlm_filling_the_disk(args, at_step=6, fill_dir=disk)
    assert returncode == 1, output[-3000:]
    assert "Traceback" not in output and "SafetensorError" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: No space left on device in {out} while saving checkpoint-8 (about "), last
    assert last.endswith("resume with --resume_from_checkpoint last (the newest complete checkpoint is kept).")
    assert sorted(n for n in os.listdir(out) if "checkpoint" in n) == ["checkpoint-4"]  # the torn one was removed
    os.remove(os.path.join(disk, "filler"))
    run_mlm([*args, "--resume_from_checkpoint", "last"])
    assert global_step(out) == 12
