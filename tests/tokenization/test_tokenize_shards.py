"""Tests of the streaming pre-tokenizer (tokenization/tokenize_shards.py): WebDataset tar shards the tests write,
a streamed local dataset, resuming, and two "machines" on localhost."""

import io
import json
import os
import subprocess
import tarfile
import time

import datasets
import pytest
import soundfile as sf

from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.tokenization import tokenize_dataset as td
from audioformer.tokenization import tokenize_shards as ts
from audioformer.training.tiny_codec import seed_audio


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = ["-m", "audioformer.tokenization.tokenize_dataset"]


def _clip_bytes(seed, seconds=0.4, sr=24000, fmt="FLAC"):
    audio = seed_audio(1, int(seconds * sr), sr, seed=seed)[:, 0].numpy().T * 0.5
    out = io.BytesIO()
    sf.write(out, audio, sr, format=fmt)
    return out.getvalue()


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_shards(root, num_shards=4, per_shard=3, corrupt_in=(1,)):
    """train-00{i}.tar: `per_shard` clips (flac and wav members, 16 and 24 kHz) with json labels; a member that does
    not decode in the shards `corrupt_in`. Returns {key: audio bytes} of the good clips."""
    os.makedirs(root, exist_ok=True)
    clips = {}
    for s in range(num_shards):
        with tarfile.open(os.path.join(root, f"train-{s:03d}.tar"), "w") as tar:
            for j in range(per_shard):
                key = f"s{s}c{j}"
                ext, fmt, sr = ("flac", "FLAC", 24000) if j % 2 == 0 else ("wav", "WAV", 16000)
                clips[key] = _clip_bytes(100 * s + j, seconds=0.2 + 0.1 * j, sr=sr, fmt=fmt)
                _add(tar, f"{key}.{ext}", clips[key])
                _add(tar, f"{key}.json", json.dumps({"labels": [f"/m/{j % 2}"], "other": 1}).encode())
            if s in corrupt_in:
                _add(tar, f"s{s}broken.flac", b"fLaC but not really")
                _add(tar, f"s{s}broken.json", json.dumps({"labels": ["/m/0"]}).encode())
    return clips


def _env(**extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    return dict(env, **extra)


def _cli(codec, out, *extra, data=None):
    data = data or []
    return [*MODULE, "--feature_extractor_name", codec, *data, "--output_dir", str(out), *extra]


def _codes_by_id(ds):
    return dict(zip(ds["id"], ds["input_ids"]))


def _arrow_bytes(out):
    folder = os.path.join(out, "train")
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder)) if f.endswith(".arrow")}


def test_expand_braces_and_list_shards(tmp_path):
    assert ts.expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert ts.expand_braces("{x,y}-{8..10}") == ["x-8", "x-9", "x-10", "y-8", "y-9", "y-10"]
    for name in ("b-1.tar", "a-0.tar", "a-1.tar"):
        (tmp_path / name).write_bytes(b"")
    expected = [str(tmp_path / n) for n in ("a-0.tar", "a-1.tar", "b-1.tar")]
    assert ts.list_shards([str(tmp_path / "b-*.tar"), str(tmp_path / "a-{0..1}.tar")]) == expected  # sorted, unique
    assert ts.list_shards(f"file://{tmp_path}/a-0.tar") == expected[:1]  # an fsspec URL
    with pytest.raises(ValueError, match="a-2.tar matches no file"):
        ts.list_shards(str(tmp_path / "a-{0..2}.tar"))


def test_tar_shards_equal_the_table_path(tiny_codec_dir, tmp_path):
    clips = _write_shards(tmp_path / "shards", num_shards=2, per_shard=3, corrupt_in=(1,))
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    fe.codec.double()  # float64: codes do not depend on the batch, so the two paths compare exactly
    shards = ts.list_shards(str(tmp_path / "shards" / "train-{000..001}.tar"))
    summary = ts.pretokenize_shards(
        {"train": shards}, fe, tmp_path / "out", label_column_name="labels", batch_size=2, show_progress=False
    )
    assert summary["clips"] == 6 and summary["failures"] == 1 and summary["processes"] == 1
    assert summary["hours"] == pytest.approx(2 * (0.2 + 0.3 + 0.4) / 3600, rel=0.02)

    out = td.load_tokenized_dataset(tmp_path / "out")["train"]
    assert set(out.column_names) == {"id", "labels", "input_ids", "length", "source_shard", "source_member"}
    assert out["id"] == ["s0c0", "s0c1", "s0c2", "s1c0", "s1c1", "s1c2"]
    assert out["labels"][1] == ["/m/1"] and out["source_member"][1] == "s0c1.wav"
    assert out["source_shard"][3] == shards[1]
    assert all(f["filename"].endswith(".arrow") for f in out.cache_files)  # memory-mapped shards, not a copy
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())["train"]
    assert [(f["shard"], f["key"]) for f in failures] == [(shards[1], "s1broken")]
    index = ts.read_index(tmp_path / "out")
    assert index["complete"] and index["splits"]["train"]["rows"] == 6
    assert [s["rows"] for s in index["splits"]["train"]["shards"]] == [3, 3]
    assert index["codec"]["codec_sha256"] == td.codec_digest(fe)
    assert td.read_tokenization_info(tmp_path / "out") == index["codec"]  # what --tokenized_dataset reads

    # The table path on the same audio, as files.
    (tmp_path / "files").mkdir()
    paths = []
    for key, data in clips.items():
        paths.append(str(tmp_path / "files" / f"{key}.audio"))
        open(paths[-1], "wb").write(data)
    table = td.pretokenize(
        datasets.Dataset.from_dict({"audio": paths}), fe, tmp_path / "table", batch_size=3, show_progress=False
    )
    expected = dict(zip([os.path.basename(p)[:-6] for p in table["source_file"]], table["input_ids"]))
    assert _codes_by_id(out) == expected
    assert out["length"] == table["length"]

    # Another split, by another run into the same folder (the recipe's train and eval): the first one is kept.
    ts.pretokenize_shards({"eval": shards[1:]}, fe, tmp_path / "out", label_column_name="labels", show_progress=False)
    both = td.load_tokenized_dataset(tmp_path / "out")
    assert set(both) == {"train", "eval"} and len(both["train"]) == 6 and both["eval"]["id"] == out["id"][3:]
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert len(failures["train"]) == len(failures["eval"]) == 1


def test_streaming_a_local_dataset(tiny_codec_dir, tmp_path):
    """--streaming over a local Parquet dataset (2 files: 2 input shards), audio as bytes, through the CLI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "pq").mkdir()
    rows = []
    for f in range(2):
        part = [{"audio": {"bytes": _clip_bytes(10 * f + i), "path": f"f{f}-{i}.flac"}, "label": i} for i in range(2)]
        pq.write_table(pa.Table.from_pylist(part), tmp_path / "pq" / f"part-{f}.parquet")
        rows += part
    argv = ["--dataset_name", "parquet", "--data_files", str(tmp_path / "pq" / "*.parquet"), "--streaming"]
    td.main(_cli(tiny_codec_dir, tmp_path / "out", *argv)[2:])
    out = td.load_tokenized_dataset(tmp_path / "out")["train"]
    assert out["id"] == ["f0-0.flac", "f0-1.flac", "f1-0.flac", "f1-1.flac"] and out["label"] == [0, 1, 0, 1]
    assert len(ts.read_index(tmp_path / "out")["splits"]["train"]["shards"]) == 2

    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    table = td.pretokenize(datasets.Dataset.from_list(rows), fe, tmp_path / "table", batch_size=2, show_progress=False)
    # float32 and the same batches (each file's 2 clips are one batch on both paths): the same codes
    assert out["input_ids"] == table["input_ids"]


def test_rerun_redoes_only_unfinished_shards(tiny_codec_dir, tmp_path, monkeypatch):
    _write_shards(tmp_path / "shards", num_shards=3, per_shard=2, corrupt_in=())
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    sources = {"train": ts.list_shards(str(tmp_path / "shards" / "*.tar"))}
    ts.pretokenize_shards(sources, fe, tmp_path / "whole", show_progress=False)

    real, calls = ts._tokenize_one, []

    def interrupted(rows, record_path, *args):
        calls.append(os.path.basename(record_path))
        if calls == ["codes-00000-of-00003.json", "codes-00001-of-00003.json"]:
            raise KeyboardInterrupt("killed")
        return real(rows, record_path, *args)

    monkeypatch.setattr(ts, "_tokenize_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ts.pretokenize_shards(sources, fe, tmp_path / "out", show_progress=False)
    with pytest.raises(ValueError, match="unfinished"):
        td.load_tokenized_dataset(tmp_path / "out")
    calls.clear()
    ts.pretokenize_shards(sources, fe, tmp_path / "out", show_progress=False)
    assert calls == ["codes-00001-of-00003.json", "codes-00002-of-00003.json"]
    assert _arrow_bytes(tmp_path / "out") == _arrow_bytes(tmp_path / "whole")

    other = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir, max_duration=1.0)
    with pytest.raises(ValueError, match="another codec or settings.*max_duration"):
        ts.pretokenize_shards(sources, other, tmp_path / "out", show_progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not empty"):
        ts.pretokenize_shards(sources, fe, tmp_path / "mine", show_progress=False)


def _start_machines(launch, tiny_codec_dir, out, shards, log_dir, tag, **env):
    procs = []
    for rank in range(2):
        cmd = launch(
            MODULE, *_cli(tiny_codec_dir, out, data=["--data_files", shards])[2:], num_machines=2, machine_rank=rank
        )
        log = open(log_dir / f"{tag}-{rank}.log", "w")
        procs.append(
            subprocess.Popen(
                cmd, cwd=REPO, env=_env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    return procs


def _kill_machine(proc):
    """kill -9 of a "machine": its launcher and its workers (torch elastic starts each in a session of its own)."""
    import psutil

    for process in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
        process.kill()


@pytest.mark.slow
def test_two_machines_split_shards_and_a_killed_machine_restarts(launch, free_port, tiny_codec_dir, tmp_path):
    """Two machines (one process each) on localhost: shards are split without overlap. Machine 1 is killed while it
    reads its second shard (a FIFO nobody writes yet): machine 0 exits with an error instead of waiting, and rerunning
    both finishes with the same files as an uninterrupted run of one process."""
    root = tmp_path / "shards"
    _write_shards(root, num_shards=4, per_shard=2, corrupt_in=(2,))
    pattern = str(root / "train-{000..003}.tar")
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    ts.pretokenize_shards({"train": ts.list_shards(pattern)}, fe, tmp_path / "single", show_progress=False)

    # Machine 1 blocks on shard 3 (a FIFO) after finishing shard 1; then it is killed.
    real = (root / "train-003.tar").read_bytes()
    os.remove(root / "train-003.tar")
    os.mkfifo(root / "train-003.tar")
    procs = _start_machines(
        launch, tiny_codec_dir, tmp_path / "killed", pattern, tmp_path, "kill", AUDIOFORMER_HEARTBEAT_TIMEOUT="5"
    )
    done = [tmp_path / "killed" / "train" / f"codes-{i:05d}-of-00004.json" for i in range(3)]
    deadline = time.monotonic() + 180
    while not all(p.exists() for p in done) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(p.exists() for p in done), (tmp_path / "kill-1.log").read_text()[-3000:]
    _kill_machine(procs[1])
    killed_at = time.monotonic()
    assert procs[0].wait(timeout=120) != 0  # machine 0 does not wait for the dead machine forever
    waited = time.monotonic() - killed_at
    procs[1].wait()
    assert "Process 1 stopped: no heartbeat" in (tmp_path / "kill-0.log").read_text()
    assert waited < 60
    os.remove(root / "train-003.tar")
    (root / "train-003.tar").write_bytes(real)

    procs = _start_machines(launch, tiny_codec_dir, tmp_path / "killed", pattern, tmp_path, "rerun")
    for p in procs:
        assert p.wait(timeout=240) == 0, (tmp_path / "rerun-0.log").read_text()[-3000:]
    assert _arrow_bytes(tmp_path / "killed") == _arrow_bytes(tmp_path / "single")
    records = [
        json.loads((tmp_path / "killed" / "train" / f"codes-{i:05d}-of-00004.json").read_text()) for i in range(4)
    ]
    assert [r["process"] for r in records] == [0, 1, 0, 1]  # rank-strided: every shard once, none twice
    assert "rank 1: 1/2 shards" in (tmp_path / "kill-1.log").read_text()  # machine 1's own progress bar
    rerun = ts.read_index(tmp_path / "killed")["summary"]
    assert rerun["processes"] == 2 and rerun["clips"] == 2  # only shard 3 was encoded again
    assert rerun["rows_in_folder"] == 8 and rerun["failures_in_folder"] == 1
    print(f"machine 0 exited {waited:.1f} s after machine 1 was killed")


def test_run_mlm_trains_on_a_code_shards_folder(tiny_codec_dir, tmp_path):
    """--tokenized_dataset DIR takes the folder as it is: the codec comes from its index, the rows from its shards."""
    import run_mlm

    _write_shards(tmp_path / "shards", num_shards=2, per_shard=4, corrupt_in=())
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    ts.pretokenize_shards({"train": ts.list_shards(str(tmp_path / "shards" / "*.tar"))}, fe, tmp_path / "codes")
    tiny = "hidden_size=32,num_hidden_layers=1,num_attention_heads=4,intermediate_size=64"
    run_mlm.main(
        [
            "--tokenized_dataset",
            str(tmp_path / "codes"),
            "--config_overrides",
            tiny,
            "--output_dir",
            str(tmp_path / "model"),
            "--do_train",
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "4",
            "--report_to",
            "none",
            "--use_cpu",
            "true",
            "--save_strategy",
            "no",
            "--disable_tqdm",
            "true",
        ]
    )
    assert os.path.isfile(tmp_path / "model" / "model.safetensors")
    saved = AudioFormerFeatureExtractor.from_pretrained(tmp_path / "model")
    assert saved.max_duration == fe.max_duration  # the codec settings recorded in index.json


def test_training_scripts_read_tar_shards_themselves(tiny_codec_dir, tmp_path):
    """run_classification.py --data_files: the shards are tokenized into --tokenized_cache_dir with their json
    labels, then trained on; a second run reuses every shard."""
    import run_classification

    _write_shards(tmp_path / "shards", num_shards=2, per_shard=6, corrupt_in=())
    tiny = "hidden_size=32,num_hidden_layers=1,num_attention_heads=4,intermediate_size=64"
    argv = ["--data_files", str(tmp_path / "shards" / "train-{000..001}.tar"), "--label_column_name", "labels"]
    argv += ["--feature_extractor_name", tiny_codec_dir, "--tokenized_cache_dir", str(tmp_path / "codes")]
    argv += ["--config_overrides", tiny, "--do_train", "--do_eval", "--max_steps", "2", "--use_cpu", "true"]
    argv += ["--per_device_train_batch_size", "4", "--report_to", "none", "--save_strategy", "no"]
    argv += ["--disable_tqdm", "true", "--validation_split_percentage", "25"]
    metrics = run_classification.main([*argv, "--output_dir", str(tmp_path / "model")])
    assert "eval_mAP" in metrics or any(k.startswith("eval_") for k in metrics)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["/m/0", "/m/1"]
    assert ts.read_index(tmp_path / "codes")["summary"]["clips"] == 12

    run_classification.main([*argv, "--output_dir", str(tmp_path / "again")])
    assert ts.read_index(tmp_path / "codes")["summary"]["clips"] == 0  # every shard reused


@pytest.mark.slow
def test_run_mlm_on_two_machines_from_a_code_shards_folder(launch, tiny_codec_dir, tmp_path):
    """run_mlm.py on two "machines" (one process each) on localhost, both reading the folder as it is."""
    _write_shards(tmp_path / "shards", num_shards=2, per_shard=4, corrupt_in=())
    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    ts.pretokenize_shards({"train": ts.list_shards(str(tmp_path / "shards" / "*.tar"))}, fe, tmp_path / "codes")
    args = ["--tokenized_dataset", tmp_path / "codes", "--output_dir", tmp_path / "model", "--do_train"]
    args += ["--config_overrides", "hidden_size=32,num_hidden_layers=1,num_attention_heads=4,intermediate_size=64"]
    args += ["--max_steps", "2", "--per_device_train_batch_size", "2", "--report_to", "none", "--use_cpu", "true"]
    args += ["--save_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "1"]
    procs = []
    for rank in range(2):
        cmd = launch(os.path.join(REPO, "run_mlm.py"), *args, num_machines=2, machine_rank=rank)
        log = open(tmp_path / f"mlm-{rank}.log", "w")
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT))
    for rank, p in enumerate(procs):
        assert p.wait(timeout=300) == 0, (tmp_path / f"mlm-{rank}.log").read_text()[-3000:]
    assert "world size: 2" in (tmp_path / "mlm-1.log").read_text()
    state = json.loads((tmp_path / "model" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
