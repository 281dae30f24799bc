"""
End-to-end tests of run_mlm.py on synthesised clips, a tiny seeded codec and a tiny model: one process, two
processes (`accelerate launch --multi_gpu --num_processes 2` on CPU = 2 gloo ranks), resuming, and bad input.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_MODEL = "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,hidden_dropout_prob=0.0"
COMMON = [
    "--config_overrides",
    TINY_MODEL,
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "8",
    "--learning_rate",
    "5e-3",
    "--logging_steps",
    "1",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--use_cpu",
    "true",
    "--seed",
    "0",
    "--dataloader_num_workers",
    "0",
]


def write_clips(directory, num_clips, seed):
    """An audiofolder split: `num_clips` seeded 1-2 s clips (tones + noise at 24 kHz) and metadata.jsonl."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    rows = []
    for i in range(num_clips):
        t = np.arange(int(24000 * rng.uniform(1.0, 2.0))) / 24000
        audio = 0.4 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(os.path.join(directory, f"clip{i}.wav"), audio.astype(np.float32), 24000)
        rows.append({"file_name": f"clip{i}.wav", "label": i % 3})
    with open(os.path.join(directory, "metadata.jsonl"), "w") as f:
        f.write("\n".join(json.dumps(r) for r in rows))


def _descendants(pid: int) -> list[int]:
    """The pids of `pid`'s children, grandchildren, ... (from /proc; empty where there is no /proc)."""
    children = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_command(cmd, *, env, cwd, timeout):
    """`subprocess.run(cmd, capture_output=True, text=True)`, except on a timeout: then every process of the run
    (`accelerate launch` starts its own) gets SIGABRT first, so that Python's faulthandler prints where each one was
    stuck, and the test fails with those stacks instead of a bare TimeoutExpired (a 2-process run hung once in CI)."""
    process = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=dict(env, PYTHONFAULTHANDLER="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in [process.pid, *_descendants(process.pid)]:
            try:
                os.kill(pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
        time.sleep(2)
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"{' '.join(cmd[:6])} ... ran past {timeout} s; its processes' stacks:\n{(stdout + stderr)[-20000:]}"
        )
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)


def run_script(args, launch=None, timeout=300):
    """run_mlm.py in one process, or in two CPU processes through the `launch` fixture."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    script = os.path.join(REPO, "run_mlm.py")
    if launch is None:
        cmd = [sys.executable, script, *args]
    else:
        env["ACCELERATE_USE_CPU"] = "1"
        cmd = launch(script, *args)
    result = run_command(cmd, cwd=REPO, env=env, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def logged_losses(output_dir):
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        history = json.load(f)["log_history"]
    return [(e["step"], e["loss"]) for e in history if "loss" in e]


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm_audio")
    write_clips(root / "train", 24, seed=0)
    write_clips(root / "validation", 8, seed=1)
    return str(root)


@pytest.fixture(scope="module")
def single_run(audio_dir, tiny_codec_dir, tmp_path_factory):
    """One single-process run from raw audio; its tokenized cache is reused by the other tests."""
    out = str(tmp_path_factory.mktemp("mlm_single"))
    cache = os.path.join(out, "tokenized")
    run_script(
        [
            "--data_dir",
            audio_dir,
            "--feature_extractor_name",
            tiny_codec_dir,
            "--codebook_index",
            "1",
            "--tokenized_cache_dir",
            cache,
            "--output_dir",
            os.path.join(out, "model"),
            "--do_train",
            "--do_eval",
            "--num_train_epochs",
            "3",
            "--save_strategy",
            "steps",
            "--save_steps",
            "9",
            "--eval_strategy",
            "no",
            *COMMON,
        ]
    )
    return {"out": os.path.join(out, "model"), "tokenized": cache}


def test_single_process_trains_and_saves_a_loadable_checkpoint(single_run, tiny_codec_dir):
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForMaskedLM

    import audioformer.modeling_audioformer  # noqa: F401 - registers the Auto classes
    from audioformer.modeling_audioformer import AudioFormerForMaskedLM

    out = single_run["out"]
    assert os.path.isfile(os.path.join(out, "model.safetensors"))
    assert not os.path.exists(os.path.join(out, "pytorch_model.bin"))
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["auto_map"]["AutoModelForMaskedLM"] == "modeling_audioformer.AudioFormerForMaskedLM"
    assert config["codebook_index"] == 1 and config["hidden_size"] == 32 and config["embedding_size"] == 32

    model = AutoModelForMaskedLM.from_pretrained(out)
    assert isinstance(model, AudioFormerForMaskedLM) and model.config.codebook_index == 1
    fe = AutoFeatureExtractor.from_pretrained(out)
    assert fe.max_duration == 2.0
    features = fe(np.sin(np.linspace(0, 300, 24000)).astype(np.float32), sampling_rate=24000, padding="longest")
    with torch.no_grad():
        logits = model(**features).logits
    assert logits.shape == (1, features["input_ids"].shape[-1], 1028)

    losses = [loss for _, loss in logged_losses(out)]
    assert len(losses) == 18  # 24 clips / batch 4 * 3 epochs
    assert abs(losses[0] - math.log(1028)) < 0.5  # an untrained model is a uniform guess
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1, losses

    with open(os.path.join(out, "eval_results.json")) as f:
        results = json.load(f)
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and math.isfinite(results["eval_loss"])


def test_resume_from_checkpoint_continues(single_run, tiny_codec_dir, tmp_path):
    out = str(tmp_path / "resumed")
    run_script(
        [
            "--tokenized_dataset",
            single_run["tokenized"],
            "--feature_extractor_name",
            tiny_codec_dir,
            "--codebook_index",
            "1",
            "--output_dir",
            out,
            "--do_train",
            "--num_train_epochs",
            "3",
            "--save_strategy",
            "no",
            "--resume_from_checkpoint",
            os.path.join(single_run["out"], "checkpoint-9"),
            *COMMON,
        ]
    )
    steps = [step for step, _ in logged_losses(out)]
    assert steps == list(range(1, 19))  # steps 1..9 come from the checkpoint's history, 10..18 are new
    with open(os.path.join(out, "trainer_state.json")) as f:
        assert json.load(f)["global_step"] == 18
    # checkpoint-9 is in the middle of epoch 2 (6 steps per epoch). Resuming there reproduces the uninterrupted
    # run bit for bit: the same losses and the same weights at the end (the masks used to differ from step 10 on).
    assert logged_losses(out) == logged_losses(single_run["out"])
    from safetensors.torch import load_file

    resumed, uninterrupted = (
        load_file(os.path.join(out, "model.safetensors")),
        load_file(os.path.join(single_run["out"], "model.safetensors")),
    )
    assert resumed.keys() == uninterrupted.keys()
    assert all(np.array_equal(resumed[k].numpy(), uninterrupted[k].numpy()) for k in resumed)


_HANG_DURING_SAVE = r"""
import os, sys, time
from transformers import Trainer
import run_mlm

real = Trainer._save_optimizer_and_scheduler

def hang_at_step(self, output_dir):  # the weights of this checkpoint are written, its optimizer state is not
    if self.state.global_step == int(os.environ["HANG_AT_STEP"]):
        open(os.environ["HANG_MARKER"], "w").close()
        time.sleep(600)
    real(self, output_dir)

Trainer._save_optimizer_and_scheduler = hang_at_step
run_mlm.main(sys.argv[1:])
"""


def test_kill_during_a_checkpoint_save_then_resume_last(single_run, tiny_codec_dir, tmp_path):
    """Defect: after kill -9 during the save of checkpoint-N, `--resume_from_checkpoint last` took the half-written
    checkpoint-N (FileNotFoundError: trainer_state.json) although checkpoint-N-3 was complete."""
    import signal
    import time

    out = str(tmp_path / "out")
    args = [
        "--tokenized_dataset",
        single_run["tokenized"],
        "--feature_extractor_name",
        tiny_codec_dir,
        "--output_dir",
        out,
        "--do_train",
        "--max_steps",
        "9",
        "--save_strategy",
        "steps",
        "--save_steps",
        "3",
        *COMMON,
    ]
    marker = tmp_path / "hanging"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", HANG_AT_STEP="6", HANG_MARKER=str(marker))
    process = subprocess.Popen(
        [sys.executable, "-c", _HANG_DURING_SAVE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 240
        while not marker.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert marker.exists(), process.stderr.read()[-3000:] if process.poll() is not None else "no save at step 6"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    names = sorted(os.listdir(out))
    assert "checkpoint-3" in names and "tmp-checkpoint-6" in names and "checkpoint-6" not in names

    output = run_script([*args, "--resume_from_checkpoint", "last"])
    assert f"skipping {os.path.join(out, 'tmp-checkpoint-6')}: a save that was interrupted" in output
    assert f"resuming from {os.path.join(out, 'checkpoint-3')}" in output
    assert f"left by pid {process.pid}" in output  # the killed run's lock is recognised and taken over
    with open(os.path.join(out, "trainer_state.json")) as f:
        assert json.load(f)["global_step"] == 9
    assert sorted(n for n in os.listdir(out) if "checkpoint" in n) == ["checkpoint-3", "checkpoint-6", "checkpoint-9"]


def test_output_dir_checked_before_any_work(tiny_codec_dir, audio_dir, tmp_path, lock_holder):
    """Defect: a read-only --output_dir was found at the first save, after the training (the model was lost)."""
    from audioformer.tokenization.folder_lock import FolderInUseError, FolderNotWritableError

    (tmp_path / "a_file").write_text("")
    cache = tmp_path / "tokenized"
    args = ["--data_dir", audio_dir, "--feature_extractor_name", tiny_codec_dir, "--tokenized_cache_dir", str(cache)]
    args += ["--do_train", *COMMON]
    with pytest.raises(FolderNotWritableError, match="a_file/out"):
        run_main([*args, "--output_dir", str(tmp_path / "a_file" / "out")])
    holder = lock_holder(tmp_path / "busy")
    with pytest.raises(FolderInUseError, match=f"busy is in use by another run: pid {holder.pid}"):
        run_main([*args, "--output_dir", str(tmp_path / "busy")])
    assert not cache.exists()  # nothing was tokenized


def test_two_processes(single_run, tiny_codec_dir, audio_dir, tmp_path, launch):
    out = str(tmp_path / "ddp")
    output = run_script(
        [
            "--data_dir",
            audio_dir,
            "--feature_extractor_name",
            tiny_codec_dir,
            "--codebook_index",
            "1",
            "--tokenized_cache_dir",
            str(tmp_path / "tokenized"),
            "--output_dir",
            out,
            "--do_train",
            "--num_train_epochs",
            "2",
            "--save_strategy",
            "no",
            *COMMON,
        ],
        launch=launch,
    )
    assert (
        "Process rank: 0, world size: 2" in output and "Process rank: 1, world size: 2" in output
    )  # two ranks really ran
    losses = logged_losses(out)
    assert len(losses) == 6  # 24 clips / (2 ranks * batch 4) * 2 epochs: each rank took half of the data
    # The logged loss is the mean over ranks: about ln(1028) at the start, not twice that (a sum).
    assert abs(losses[0][1] - math.log(1028)) < 0.5, losses
    from transformers import AutoModelForMaskedLM

    import audioformer.modeling_audioformer  # noqa: F401

    assert AutoModelForMaskedLM.from_pretrained(out).config.codebook_index == 1


# ---------------------------------------------------------------------------------------------- bad input


def run_main(args):
    """run_mlm.main in this process: bad input must raise before anything trains."""
    import run_mlm

    return run_mlm.main(args)


def assert_nothing_trained(output_dir):
    assert not os.path.exists(os.path.join(output_dir, "model.safetensors"))
    assert not any(n.startswith("checkpoint") for n in os.listdir(output_dir)) if os.path.isdir(output_dir) else True


def test_bad_codebook_index(single_run, tiny_codec_dir, audio_dir, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="codebook_index 4 .*4 codebooks"):
        run_main(
            [
                "--data_dir",
                audio_dir,
                "--feature_extractor_name",
                tiny_codec_dir,
                "--codebook_index",
                "4",
                "--output_dir",
                out,
                "--do_train",
                *COMMON,
            ]
        )
    with pytest.raises(ValueError, match="codebook_index 7 .*4 codebooks"):
        run_main(
            [
                "--tokenized_dataset",
                single_run["tokenized"],
                "--feature_extractor_name",
                tiny_codec_dir,
                "--codebook_index",
                "7",
                "--output_dir",
                out,
                "--do_train",
                *COMMON,
            ]
        )
    assert_nothing_trained(out)


def test_no_audio_column(tiny_codec_dir, audio_dir, tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("path,label\n" + os.path.join(audio_dir, "train", "clip0.wav") + ",1\n")
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="Audio column 'audio' not found"):
        run_main(
            [
                "--train_file",
                str(csv),
                "--feature_extractor_name",
                tiny_codec_dir,
                "--output_dir",
                out,
                "--do_train",
                *COMMON,
            ]
        )
    assert_nothing_trained(out)


def test_label_only_and_empty_datasets(tiny_codec_dir, single_run, tmp_path):
    import datasets

    labels_only = str(tmp_path / "labels_only")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"label": [0, 1, 2]})}).save_to_disk(labels_only)
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="no 'input_ids' column"):
        run_main(
            [
                "--tokenized_dataset",
                labels_only,
                "--feature_extractor_name",
                tiny_codec_dir,
                "--output_dir",
                out,
                "--do_train",
                *COMMON,
            ]
        )

    codes = datasets.load_from_disk(single_run["tokenized"])
    empty_eval = str(tmp_path / "empty_eval")
    datasets.DatasetDict({"train": codes["train"], "validation": codes["validation"].select([])}).save_to_disk(
        empty_eval, num_shards={"train": 1, "validation": 1}
    )
    with pytest.raises(ValueError, match="validation split .* is empty"):
        run_main(
            [
                "--tokenized_dataset",
                empty_eval,
                "--feature_extractor_name",
                tiny_codec_dir,
                "--output_dir",
                out,
                "--do_train",
                "--do_eval",
                *COMMON,
            ]
        )
    assert_nothing_trained(out)


def test_config_overrides_and_json_file(tmp_path):
    from audioformer.modeling_audioformer import AudioFormerConfig
    from audioformer.training.loading import apply_config_overrides

    config = apply_config_overrides(AudioFormerConfig(), "hidden_size=64,num_attention_heads=4,hidden_act=relu")
    assert (config.hidden_size, config.embedding_size, config.num_attention_heads) == (64, 64, 4)
    assert config.hidden_act == "relu"
    with pytest.raises(ValueError, match="no field 'hiden_size'"):
        apply_config_overrides(AudioFormerConfig(), "hiden_size=64")
    with pytest.raises(ValueError, match="multiple of"):
        apply_config_overrides(AudioFormerConfig(), "hidden_size=70")

    # The shipped configs parse (paper recipe and demo).
    from transformers import HfArgumentParser, TrainingArguments

    from audioformer.training.arguments import ModelArguments, parse_args
    from run_mlm import MLMDataArguments

    parser = HfArgumentParser((ModelArguments, MLMDataArguments, TrainingArguments))
    demo = os.path.join(REPO, "configs", "mlm_tiny_demo.yaml")  # a YAML file as the only argument
    model_args, data_args, training_args = parse_args(parser, [demo])
    assert model_args.config_overrides.startswith("hidden_size=64") and training_args.learning_rate == 1e-3
    assert data_args.mlm_probability == 0.25 and training_args.do_train and training_args.use_cpu

    codebooks = set()
    for name in sorted(os.listdir(os.path.join(REPO, "configs"))):
        if name.startswith("mlm_"):
            with open(os.path.join(REPO, "configs", name)) as f:
                values = yaml.safe_load(f) if name.endswith(".yaml") else json.load(f)
            # use_cpu: this machine has no GPU for bf16; every other key is parsed as the script parses it.
            model_args, data_args, training_args = parser.parse_dict(dict(values, use_cpu=True))
            assert data_args.mlm_probability == 0.25
            if "audioset" in name:
                assert training_args.learning_rate == 1e-4 and training_args.num_train_epochs == 10
                assert training_args.bf16 and data_args.mlm_probability == 0.25
                codebooks.add(model_args.codebook_index)
    assert codebooks == {0, 1, 2, 3}  # one pretraining run per codebook (paper 4.2)


def test_max_duration_cuts_pretokenized_codes():
    """--max_duration on codes tokenized with a longer one: the collator cuts them, so the length check must too."""
    import datasets

    from audioformer.modeling_audioformer import AudioFormerConfig
    from audioformer.training.arguments import ModelArguments
    from audioformer.training.data import check_max_positions, max_code_length

    class Codec:  # the two numbers max_code_length reads from the feature extractor
        sampling_rate, hop_length = 24000, 320

    assert max_code_length(ModelArguments(max_duration=10.0), Codec()) == 752  # paper: 750 frames + BOA + EOA
    assert max_code_length(ModelArguments(), Codec()) is None
    codes = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"input_ids": [[[0] + [5] * 98 + [2]]], "length": [100]})}
    )
    config = AudioFormerConfig(max_position_embeddings=64)
    with pytest.raises(ValueError, match="sequences of 100 ids"):
        check_max_positions(codes, config)
    check_max_positions(codes, config, max_length=64)
