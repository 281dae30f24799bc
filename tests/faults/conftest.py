"""
Fixtures of the fault tests: a tiny seeded code dataset saved as a pre-tokenizer output would be (48 clips, 4
codebooks), the tiny codec as a local folder, and run_mlm.py in a subprocess (as a user runs it).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Attention dropout stays on (the default 0.1): a resume is exact only if nothing else draws from the global RNG.
TINY_MODEL = "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64"
COMMON = [
    "--config_overrides",
    TINY_MODEL,
    "--per_device_train_batch_size",
    "4",
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
    "--codebook_index",
    "0",
]


def write_codes(path, num_clips=48, num_codebooks=4, seed=0):
    """A DatasetDict {"train"} of seeded codes `(num_codebooks, frames + 2)` = [BOA, c + 3, ..., EOA] saved at
    `path` with save_to_disk, as `tokenize_dataset` writes it (without its tokenization_info.json)."""
    import datasets

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_clips):
        frames = int(rng.integers(20, 60))
        codes = rng.integers(3, 1027, size=(num_codebooks, frames + 2)).astype(np.int16)
        codes[:, 0], codes[:, -1] = 0, 2
        rows.append(codes.tolist())
    features = datasets.Features(
        {"input_ids": datasets.Sequence(datasets.Sequence(datasets.Value("int16"))), "length": datasets.Value("int32")}
    )
    ds = datasets.Dataset.from_dict({"input_ids": rows, "length": [len(r[0]) for r in rows]}, features=features)
    datasets.DatasetDict({"train": ds}).save_to_disk(os.fspath(path))
    return os.fspath(path)


@pytest.fixture(scope="session")
def codes_dir(tmp_path_factory):
    return write_codes(tmp_path_factory.mktemp("codes") / "codes")


STEPS = ["--max_steps", "12", "--save_strategy", "steps", "--save_steps", "4"]


@pytest.fixture(scope="session")
def full_run(codes_dir, tiny_codec_dir, tmp_path_factory):
    """The uninterrupted run the resumed ones are compared with: 12 steps, a checkpoint every 4."""
    out = str(tmp_path_factory.mktemp("full") / "out")
    run_mlm(mlm_args(codes_dir, tiny_codec_dir, out, *STEPS))
    return out


_SELF_SIGNAL = r"""
import os, signal, sys
from audioformer.training.checkpointing import AtomicCheckpointTrainer
import run_mlm

real = AtomicCheckpointTrainer.training_step

def signal_during_a_step(self, *args, **kwargs):  # the notice arrives in the middle of a step
    if self.state.global_step == int(os.environ["SIGNAL_AT_STEP"]):
        os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL_NAME"]))
    return real(self, *args, **kwargs)

AtomicCheckpointTrainer.training_step = signal_during_a_step
run_mlm.main(sys.argv[1:])
"""


def run_mlm_signalled(args, at_step, name="SIGTERM", timeout=300):
    """run_mlm.py in a subprocess that sends itself `name` during the step after `at_step`."""
    env = script_env(SIGNAL_AT_STEP=str(at_step), SIGNAL_NAME=name)
    cmd = [sys.executable, "-c", _SELF_SIGNAL, *map(str, args)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def script_env(**extra):
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=REPO, OMP_NUM_THREADS="1", **extra)


def run_mlm(args, check=True, timeout=300, launch=None, **env):
    """run_mlm.py in a subprocess (or two, through the `launch` fixture); returns (returncode, output)."""
    script = os.path.join(REPO, "run_mlm.py")
    environment = script_env(**env)
    if launch is None:
        cmd = [sys.executable, script, *map(str, args)]
    else:
        environment["ACCELERATE_USE_CPU"] = "1"
        cmd = launch(script, *args)
    result = subprocess.run(cmd, cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, output[-6000:]
    return result.returncode, output


def mlm_args(codes, codec, out, *extra):
    """The flags of a tiny MLM run on `codes` with the codec folder `codec`, writing `out`, then `extra`."""
    return [
        "--tokenized_dataset",
        codes,
        "--feature_extractor_name",
        codec,
        "--output_dir",
        out,
        "--do_train",
        *COMMON,
        *map(str, extra),
    ]


def weights(folder):
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
    assert worst == 0.0, f"weights of {a} and {b} differ by up to {worst}"


def global_step(folder):
    with open(os.path.join(folder, "trainer_state.json")) as f:
        return json.load(f)["global_step"]


_SLOW_AFTER = r"""
import os, sys, time
from audioformer.training.checkpointing import AtomicCheckpointTrainer
import run_mlm

real = AtomicCheckpointTrainer.training_step

def slow_steps(self, *args, **kwargs):  # from step SLOW_AFTER_STEP on, each step takes a second: time to signal
    if self.state.global_step >= int(os.environ["SLOW_AFTER_STEP"]):
        open(os.environ["SLOW_MARKER"], "w").close()
        time.sleep(1.0)
    return real(self, *args, **kwargs)

AtomicCheckpointTrainer.training_step = slow_steps
run_mlm.main(sys.argv[1:])
"""


def slow_script(tmp_path):
    """A script file: run_mlm.py whose steps take a second from env SLOW_AFTER_STEP on (it writes SLOW_MARKER)."""
    path = os.path.join(tmp_path, "slow_run_mlm.py")
    with open(path, "w") as f:
        f.write(_SLOW_AFTER)
    return path


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(megabytes)`: a folder on a tmpfs of that size (a full disk that is really full); the test is
    skipped where mounting is not permitted (not root, or a container without CAP_SYS_ADMIN)."""
    mounted = []

    def mount(megabytes):
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a {megabytes} MB tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def folder_bytes(folder, skip=()):
    """Bytes of the files below `folder`, leaving out the top-level entries in `skip`."""
    total = 0
    for root, dirs, names in os.walk(folder):
        if root == os.fspath(folder):
            dirs[:] = [d for d in dirs if d not in skip]
        total += sum(os.path.getsize(os.path.join(root, n)) for n in names if n not in skip)
    return total


def fill_disk(folder, leave_bytes):
    """Fills the disk of `folder` with one file until about `leave_bytes` are free; returns that file's path."""
    import shutil

    path = os.path.join(folder, "filler")
    free = shutil.disk_usage(folder).free
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return path


_FILL_DISK_AT = r"""
import os, sys
from audioformer.training.checkpointing import AtomicCheckpointTrainer
import run_mlm
from audioformer.training.runs import run_main

real = AtomicCheckpointTrainer.training_step

def fill_the_disk(self, *args, **kwargs):  # another job fills the disk before the save of step FILL_AT_STEP
    if self.state.global_step == int(os.environ["FILL_AT_STEP"]):
        import shutil
        free = shutil.disk_usage(self.args.output_dir).free
        with open(os.path.join(os.environ["FILL_DIR"], "filler"), "wb") as f:
            f.write(b"\0" * max(0, free - 100_000))
    return real(self, *args, **kwargs)

AtomicCheckpointTrainer.training_step = fill_the_disk
sys.argv = ["run_mlm.py", *sys.argv[1:]]
run_main(run_mlm.main)
"""


def run_mlm_filling_the_disk(args, at_step, fill_dir, timeout=300):
    env = script_env(FILL_AT_STEP=str(at_step), FILL_DIR=str(fill_dir))
    cmd = [sys.executable, "-c", _FILL_DISK_AT, *map(str, args)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """An audiofolder: train 12 clips of 0.3 s, validation 3."""
    import soundfile as sf

    from audioformer.training.tiny_codec import seed_audio

    root = tmp_path_factory.mktemp("clips")
    for split, n in (("train", 12), ("validation", 3)):
        (root / split).mkdir()
        audio = seed_audio(n, 7200, seed=len(split))[:, 0].numpy() * 0.5
        for i in range(n):
            sf.write(root / split / f"clip{i}.wav", audio[i], 24000)
    return str(root)


@pytest.fixture(scope="session")
def feature_extractor(tiny_codec_dir):
    from audioformer.tokenization import AudioFormerFeatureExtractor

    return AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)


def tokenize(clips, feature_extractor, out, **kwargs):
    """pretokenize of the `clips` audiofolder into `out`, 4 shards per split."""
    from audioformer.tokenization import tokenize_dataset as td
    from audioformer.tokenization.audio_io import load_audio_dataset

    dataset = load_audio_dataset(data_dir=clips)
    return td.pretokenize(dataset, feature_extractor, out, num_shards=4, show_progress=False, **kwargs)


@pytest.fixture(scope="session")
def finished(clips, feature_extractor, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("finished") / "codes")
    tokenize(clips, feature_extractor, out)
    return out
