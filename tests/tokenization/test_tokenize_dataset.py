"""Tests of the dataset pre-tokenizer (tokenization/tokenize_dataset.py, tokenization/audio_io.py)."""

import json
import os
import shutil
import subprocess
import sys

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch

from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.tokenization import tokenize_dataset as td
from audioformer.tokenization.audio_io import decode_audio, load_audio_dataset


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pretokenize_dict(audiofolder, tiny_codec_dir, tmp_path):
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    fe.codec.double()  # float64: codes independent of batch composition, so the comparison below is exact
    dsd = load_audio_dataset(data_dir=audiofolder)
    out = td.pretokenize(dsd, fe, tmp_path / "out", batch_size=3, num_shards=2, show_progress=False)

    assert isinstance(out, datasets.DatasetDict) and set(out) == {"train", "validation"}
    train = out["train"]
    assert len(train) == 5 and len(out["validation"]) == 2  # broken and empty files left out
    assert train.features["input_ids"].feature.feature.dtype == "int16"
    assert set(train.column_names) == {"label", "caption", "input_ids", "length", "source_file"}
    assert train["caption"] == [f"train {i}" for i in range(5)]
    # Each row names its file, also after the broken file (row 2 of the source) was skipped.
    assert [os.path.basename(p) for p in train["source_file"]] == [f"clip{i}.wav" for i in range(5)]
    assert all(os.path.isabs(p) for p in train["source_file"])

    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert sorted(os.path.basename(f["audio"]) for f in failures["train"]) == ["broken.wav", "empty.wav"]
    assert failures["validation"] == []
    assert not (tmp_path / "out" / "_work").exists()

    # Same ids as the feature extractor on the decoded clip, unpadded: (4, frames + 2), BOA ... EOA.
    for row, src in zip(train, [r for r in dsd["train"] if "clip" in r["audio"]]):
        audio, sr = decode_audio(src["audio"])
        ref = fe([audio], sampling_rate=sr, padding="longest")["input_ids"][0]  # one (C, T) clip: in a list
        ids = torch.tensor(row["input_ids"])
        assert ids.shape == (4, row["length"]) and row["length"] == ref.shape[-1]
        torch.testing.assert_close(ids.long(), ref, rtol=0, atol=0)

    reloaded = td.load_tokenized_dataset(tmp_path / "out")
    assert reloaded["train"]["input_ids"] == train["input_ids"]
    assert isinstance(datasets.load_from_disk(str(tmp_path / "out")), datasets.DatasetDict)


def test_pretokenize_resumes_unfinished_shards(audiofolder, tiny_codec_dir, tmp_path, monkeypatch):
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    ds = load_audio_dataset(data_dir=audiofolder)["validation"]
    ds = datasets.concatenate_datasets([ds, ds, ds])  # 6 rows, 3 shards of 2
    real = td._tokenize_shard
    calls = []

    def crash_on_second(shard, *args):
        calls.append(len(shard))
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(shard, *args)

    monkeypatch.setattr(td, "_tokenize_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        td.pretokenize(ds, fe, tmp_path / "out", num_shards=3, show_progress=False)
    assert len(os.listdir(tmp_path / "out" / "_work" / "data")) == 1  # the first shard is finished

    calls.clear()
    monkeypatch.setattr(td, "_tokenize_shard", lambda shard, *a: calls.append(len(shard)) or real(shard, *a))
    out = td.pretokenize(ds, fe, tmp_path / "out", num_shards=3, show_progress=False)
    assert calls == [2, 2]  # only shards 2 and 3 were encoded again
    assert isinstance(out, datasets.Dataset) and len(out) == 6
    assert out["input_ids"][0] == out["input_ids"][2] == out["input_ids"][4]

    other = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir, max_duration=1.0)
    with pytest.raises(ValueError, match=r"another codec or settings \(max_duration: 2.0 then, 1.0 now\)"):
        td.pretokenize(ds, other, tmp_path / "out", num_shards=3, show_progress=False)


def test_resumed_run_still_reports_failures_of_finished_splits(
    audiofolder, tiny_codec_dir, tmp_path, monkeypatch, caplog
):
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    dsd = load_audio_dataset(data_dir=audiofolder)
    real = td._pretokenize_split

    def crash_on_validation(ds, fe_, split_dir, *args):
        if split_dir.endswith("validation"):
            raise KeyboardInterrupt("simulated interruption")
        return real(ds, fe_, split_dir, *args)

    monkeypatch.setattr(td, "_pretokenize_split", crash_on_validation)
    with pytest.raises(KeyboardInterrupt):
        td.pretokenize(dsd, fe, tmp_path / "out", show_progress=False)
    monkeypatch.setattr(td, "_pretokenize_split", real)
    with caplog.at_level("WARNING", logger=td.__name__):
        out = td.pretokenize(dsd, fe, tmp_path / "out", show_progress=False)  # train is done: only validation runs
    assert len(out["train"]) == 5 and len(out["validation"]) == 2
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert sorted(os.path.basename(f["audio"]) for f in failures["train"]) == ["broken.wav", "empty.wav"]
    assert failures["validation"] == []
    assert "broken.wav" in caplog.text and "empty.wav" in caplog.text


def test_pretokenize_column_handling(audiofolder, tiny_codec_dir, tmp_path):
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    ds = load_audio_dataset(data_dir=audiofolder)["validation"]
    dropped = td.pretokenize(ds, fe, tmp_path / "dropped", keep_columns=False, show_progress=False)
    assert dropped.column_names == ["input_ids", "length", "source_file"] and len(dropped) == 2
    only_audio = td.pretokenize(ds.select_columns(["audio"]), fe, tmp_path / "only_audio", show_progress=False)
    assert only_audio["input_ids"] == dropped["input_ids"]  # e.g. a folder of wav files without metadata
    with pytest.raises(ValueError, match=r"already has column\(s\) \['length'\]"):
        td.pretokenize(ds.add_column("length", [1.0, 2.0]), fe, tmp_path / "clash", show_progress=False)


def test_pretokenize_bad_arguments(tiny_codec_dir, tmp_path):
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    ds = datasets.Dataset.from_dict({"path": ["a.wav"]})
    with pytest.raises(ValueError, match="Audio column 'audio' not found"):
        td.pretokenize(ds, fe, tmp_path / "out", show_progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        td.pretokenize(ds, fe, tmp_path / "out", audio_column_name="path", batch_size=0, show_progress=False)


def _env():
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


@pytest.mark.slow
def test_cli(audiofolder, tiny_codec_dir, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "audioformer.tokenization.tokenize_dataset",
        "--feature_extractor_name",
        tiny_codec_dir,
        "--data_dir",
        audiofolder,
        "--output_dir",
        str(tmp_path / "out"),
        "--preprocessing_batch_size",
        "4",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.wav" in proc.stderr and "empty.wav" in proc.stderr  # reported by name at the end
    out = td.load_tokenized_dataset(tmp_path / "out")
    assert len(out["train"]) == 5 and len(out["validation"]) == 2


_TWO_PROCESS_SCRIPT = r"""
import json, os, sys
import datasets
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.tokenization import tokenize_dataset as td

fe_dir, data_dir, bad_dir, out = sys.argv[1:5]
# 1. the CLI, each process taking its own shards
td.main(["--feature_extractor_name", fe_dir, "--data_dir", data_dir, "--output_dir", os.path.join(out, "ok"),
         "--num_shards", "4", "--preprocessing_batch_size", "1"])
# 2. failures must reach every process (instead of leaving the others at a barrier until the timeout)
rank = td.process_state().process_index
fe = AudioFormerFeatureExtractor.from_pretrained(fe_dir)
ds = datasets.Dataset.from_dict({"audio": [os.path.join(bad_dir, f"{i}.wav") for i in range(4)]})
messages = []
try:  # no readable clip: rank 0 finds out while merging
    td.pretokenize(ds, fe, os.path.join(out, "a"), num_shards=2, show_progress=False)
except Exception as err:
    messages.append(f"{type(err).__name__}: {err}")
if rank == 1:  # a failure on rank 1 only, while encoding its shard
    def boom(*args):
        raise RuntimeError("codec exploded")
    td._tokenize_shard = boom
try:
    td.pretokenize(ds, fe, os.path.join(out, "b"), num_shards=2, show_progress=False)
except Exception as err:
    messages.append(f"{type(err).__name__}: {err}")
with open(os.path.join(out, f"messages-{rank}.json"), "w") as f:
    json.dump(messages, f)
td.shutdown()
"""


@pytest.mark.slow
def test_accelerate_launch_two_processes(audiofolder, tiny_codec_dir, tmp_path, launch):
    pytest.importorskip("accelerate")
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(4):
        (bad / f"{i}.wav").write_bytes(b"not audio")
    script = tmp_path / "two_processes.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    cmd = launch(script, tiny_codec_dir, audiofolder, str(bad), str(tmp_path))
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "\n".join(x for x in proc.stderr.splitlines() if "[rank" in x)[-3000:]
    assert "tokenizing (rank 1)" in proc.stderr  # a second process really took shards
    single = td.pretokenize(
        load_audio_dataset(data_dir=audiofolder),
        AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir),
        tmp_path / "single",
        batch_size=1,
        show_progress=False,
    )  # same batch shapes: same float32 codes
    two = td.load_tokenized_dataset(tmp_path / "ok")
    for split in ("train", "validation"):
        assert two[split]["caption"] == single[split]["caption"]
        assert two[split]["input_ids"] == single[split]["input_ids"]

    # Every process raised, with the same message.
    messages = [json.loads((tmp_path / f"messages-{rank}.json").read_text()) for rank in range(2)]
    assert messages[0] == messages[1] and len(messages[0]) == 2
    assert messages[0][0].startswith("ValueError: No clip of") and "4 unreadable or empty files" in messages[0][0]
    assert "0.wav: LibsndfileError" in messages[0][0]
    assert messages[0][1] == "RuntimeError: Pre-tokenization failed on process 1: RuntimeError: codec exploded"


@pytest.mark.parametrize("rows,shards", [(5, 4), (7, 7), (10, 3), (1, 1), (1024, 5)])
def test_shards_cover_every_row_once_and_none_is_empty(rows, shards):
    ranges = [td._shard_range(rows, shards, i) for i in range(shards)]
    assert [r for start, end in ranges for r in range(start, end)] == list(range(rows))
    assert all(end > start for start, end in ranges)


def test_more_shards_than_a_multiple_of_rows(tiny_feature_extractor, tmp_path):
    """5 clips in 4 shards: the old ceil-sized shards left shard 3 empty and `select` failed on it."""
    rng = np.random.default_rng(3)
    ds = datasets.Dataset.from_dict(
        {"audio": [{"array": rng.standard_normal(2400).astype(np.float32), "sampling_rate": 24000} for _ in range(5)]}
    )
    out = td.pretokenize(ds, tiny_feature_extractor, tmp_path / "out", num_shards=4, show_progress=False)
    assert len(out) == 5


# ------------------------------------------------------------------------- never stale or mixed codes, one run


def _clips(folder, seeds, seconds=0.3):
    """Files folder/clip{i}.wav from the given seeds, as a Dataset of paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, seed in enumerate(seeds):
        audio = np.random.default_rng(seed).standard_normal(int(24000 * seconds)).astype(np.float32) * 0.3
        path = os.path.join(folder, f"clip{i}.wav")
        sf.write(path, audio, 24000)
        paths.append(path)
    return datasets.Dataset.from_dict({"audio": paths})


def test_a_reused_folder_with_other_files_is_an_error_or_tokenized_again(tiny_feature_extractor, tmp_path, caplog):
    """Defect: tokenizing set B into the output folder of set A returned A's codes, exit 0."""
    a = _clips(tmp_path / "A", [1, 2, 3])
    b = _clips(tmp_path / "B", [4, 5, 6])
    expected_b = td.pretokenize(b, tiny_feature_extractor, tmp_path / "b_alone", show_progress=False)
    td.pretokenize(a, tiny_feature_extractor, tmp_path / "out", show_progress=False)
    with pytest.raises(ValueError, match=r"other input files .*3 new: .*B/clip0.wav.*3 no longer listed: .*A/clip0"):
        td.pretokenize(b, tiny_feature_extractor, tmp_path / "out", show_progress=False)
    with caplog.at_level("WARNING", logger=td.__name__):
        out = td.pretokenize(
            b, tiny_feature_extractor, tmp_path / "out", show_progress=False, if_inputs_changed="retokenize"
        )
    assert "is stale" in caplog.text
    assert out["input_ids"] == expected_b["input_ids"] and out["source_file"] == b["audio"]
    # The same files again: reused as they are.
    assert (
        td.pretokenize(b, tiny_feature_extractor, tmp_path / "out", show_progress=False)["input_ids"]
        == out["input_ids"]
    )


def test_an_edited_file_is_noticed(tiny_feature_extractor, tmp_path):
    """Defect: the cache did not notice a file replaced by another one."""
    ds = _clips(tmp_path / "A", [1, 2, 3])
    first = td.pretokenize(ds, tiny_feature_extractor, tmp_path / "out", batch_size=1, show_progress=False)
    first = list(first["input_ids"])  # read now: the files behind `first` are replaced below
    _clips(tmp_path / "A", [9], seconds=0.5)  # clip0.wav replaced by another clip
    with pytest.raises(ValueError, match=r"1 changed: .*A/clip0.wav \(size \d+ -> \d+, modification time changed\)"):
        td.pretokenize(ds, tiny_feature_extractor, tmp_path / "out", show_progress=False)
    again = td.pretokenize(
        ds, tiny_feature_extractor, tmp_path / "out", batch_size=1, if_inputs_changed="retokenize", show_progress=False
    )  # batch_size 1: codes independent of the other clip lengths, also in float32
    assert again["input_ids"][1:] == first[1:] and again["input_ids"][0] != first[0]
    assert again["length"][0] == 2 + 38  # 0.5 s = 37.5 frames, rounded up


def test_a_killed_run_restarted_on_other_files_redoes_its_shards(tiny_feature_extractor, tmp_path, monkeypatch):
    """Defect: a run killed after some shards and restarted on other clips returned a mix of the two sets."""
    c = _clips(tmp_path / "C", [1, 2, 3, 4, 5, 6])
    d = _clips(tmp_path / "D", [7, 8, 9, 10, 11, 12])
    real = td._tokenize_shard
    calls = []

    def crash_on_third(shard, *args):
        calls.append(len(shard))
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(shard, *args)

    monkeypatch.setattr(td, "_tokenize_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        td.pretokenize(c, tiny_feature_extractor, tmp_path / "out", num_shards=3, show_progress=False)
    monkeypatch.setattr(td, "_tokenize_shard", real)
    out = td.pretokenize(d, tiny_feature_extractor, tmp_path / "out", num_shards=3, show_progress=False)
    expected = td.pretokenize(d, tiny_feature_extractor, tmp_path / "d_alone", num_shards=3, show_progress=False)
    assert out["source_file"] == d["audio"] and out["input_ids"] == expected["input_ids"]


def test_another_codec_under_the_same_name_is_an_error(tiny_codec_dir, tmp_path):
    ds = _clips(tmp_path / "A", [1, 2])
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    td.pretokenize(ds, fe, tmp_path / "out", show_progress=False)
    retrained = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    with torch.no_grad():
        next(retrained.codec.parameters()).add_(0.01)  # e.g. the codec folder rebuilt with other weights
    with pytest.raises(
        ValueError, match=r"another codec or settings \(codec_sha256: '[0-9a-f]+' then, '[0-9a-f]+' now"
    ):
        td.pretokenize(ds, retrained, tmp_path / "out", show_progress=False)


def test_a_folder_that_is_not_a_tokenizer_output_is_never_written_nor_deleted(tiny_feature_extractor, tmp_path):
    ds = _clips(tmp_path / "A", [1])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    for resume in (True, False):
        with pytest.raises(ValueError, match=r"mine is not empty \(thesis.tex\) .* not a pre-tokenizer output"):
            td.pretokenize(ds, tiny_feature_extractor, tmp_path / "mine", resume=resume, show_progress=False)
    assert sorted(os.listdir(tmp_path / "mine")) == ["thesis.tex"]


def test_a_truncated_file_is_listed_in_failures(tiny_feature_extractor, tmp_path):
    ds = _clips(tmp_path / "A", [1, 2])
    data = open(ds[1]["audio"], "rb").read()
    open(ds[1]["audio"], "wb").write(data[: len(data) // 3])
    out = td.pretokenize(ds, tiny_feature_extractor, tmp_path / "out", show_progress=False)
    assert out["source_file"] == [ds[0]["audio"]]
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())["data"]
    assert failures[0]["audio"] == ds[1]["audio"] and "truncated audio" in failures[0]["error"]


def test_a_folder_in_use_by_another_run_is_refused(tiny_feature_extractor, tmp_path, lock_holder):
    from audioformer.tokenization.folder_lock import FolderInUseError

    ds = _clips(tmp_path / "A", [1])
    holder = lock_holder(tmp_path / "out")
    with pytest.raises(FolderInUseError, match=rf"out is in use by another run: pid {holder.pid} on host"):
        td.pretokenize(ds, tiny_feature_extractor, tmp_path / "out", show_progress=False)
    holder.kill()
    holder.wait()
    assert len(td.pretokenize(ds, tiny_feature_extractor, tmp_path / "out", show_progress=False)) == 1


_BLOCK_ON_SECOND_SHARD = r"""
import os, sys, time
from audioformer.tokenization import tokenize_dataset as td

real, calls = td._tokenize_shard, []

def block_on_second_shard(*args):
    calls.append(1)
    if len(calls) == 2:  # the first shard is finished on disk
        open(os.environ["BLOCKED"], "w").close()
        while not os.path.exists(os.environ["GO"]):
            time.sleep(0.1)
    return real(*args)

td._tokenize_shard = block_on_second_shard
td.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_two_concurrent_pretokenizers(audiofolder, tiny_codec_dir, tmp_path):
    """Defect: a second pre-tokenizer on the same folder died with `OSError: Directory not empty: .tmp-shard-...`
    (or mixed its data in). Now it stops at once naming the first; a lock left by a kill -9 is taken over."""
    import time

    out = str(tmp_path / "out")
    argv = ["--feature_extractor_name", tiny_codec_dir, "--data_dir", audiofolder, "--output_dir", out]
    argv += ["--num_shards", "2", "--preprocessing_batch_size", "2"]

    def start_blocking(name):
        env = dict(_env(), BLOCKED=str(tmp_path / f"{name}.blocked"), GO=str(tmp_path / f"{name}.go"))
        process = subprocess.Popen(
            [sys.executable, "-c", _BLOCK_ON_SECOND_SHARD, *argv], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.time() + 240
        while not (tmp_path / f"{name}.blocked").exists():
            assert process.poll() is None and time.time() < deadline, process.stderr.read()[-3000:]
            time.sleep(0.1)
        return process

    def cli():
        cmd = [sys.executable, "-m", "audioformer.tokenization.tokenize_dataset", *argv]
        return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)

    first = start_blocking("first")
    second = cli()
    assert second.returncode != 0 and f"is in use by another run: pid {first.pid} on host" in second.stderr
    assert "Directory not empty" not in second.stderr
    (tmp_path / "first.go").touch()
    assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
    expected = td.load_tokenized_dataset(out)
    assert len(expected["train"]) == 5

    shutil.rmtree(out)
    killed = start_blocking("killed")
    killed.kill()  # kill -9 while it holds the lock, one shard of train written
    killed.wait()
    after = cli()
    assert after.returncode == 0, after.stderr[-3000:]
    assert f"left by pid {killed.pid}" in after.stderr and "Taking over" in after.stderr
    out = td.load_tokenized_dataset(out)
    for split in ("train", "validation"):
        assert out[split]["input_ids"] == expected[split]["input_ids"]
        assert out[split]["source_file"] == expected[split]["source_file"]
