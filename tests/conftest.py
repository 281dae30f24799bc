"""Shared test fixtures. Everything is built locally: no test downloads anything."""

import os
import socket
import sys

import pytest
import torch


# The test models are tiny; with 2 cores shared by parallel jobs, multi-threaded kernels spin and run 10x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def offline():
    """No test reaches the network: the Hub and datasets run offline, in this process and in the subprocesses
    that tests start (which inherit the environment)."""
    import datasets
    import huggingface_hub

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        yield


def pytest_collection_modifyitems(config, items):
    """End-to-end script runs (tests/scripts) are slow: `pytest -m "not slow"` runs the fast part alone."""
    for item in items:
        if "scripts" in item.path.parts[-2:-1]:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def free_port() -> int:
    """A free TCP port on this machine, for the process group of an `accelerate launch` test: a fixed one collides
    with other test runs on the same machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_config():
    """`tiny_config(**overrides)`: an AudioFormerConfig of the tiny model (`tiny_codec.TINY_MODEL`), with overrides."""
    from audioformer.modeling_audioformer import AudioFormerConfig
    from audioformer.training.tiny_codec import TINY_MODEL

    return lambda **overrides: AudioFormerConfig(**{**TINY_MODEL, **overrides})


def launch_command(script, *args, num_processes: int = 2, port: int, num_machines: int = 1, machine_rank: int = 0):
    """`accelerate launch` of `script` (a path, or `-m module`) on CPU processes: without a GPU, `--multi_gpu`
    starts torch.distributed workers that join a gloo group (MULTI_CPU); run it with ACCELERATE_USE_CPU set."""
    script = list(script) if isinstance(script, (list, tuple)) else [os.fspath(script)]
    machines = ["--num_machines", str(num_machines)]
    if num_machines > 1:
        machines += ["--machine_rank", str(machine_rank), "--main_process_ip", "127.0.0.1"]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        *machines,
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        *script,
        *map(str, args),
    ]


@pytest.fixture
def launch(free_port):
    """`launch(script, *args, num_processes=2)`: the `accelerate launch` command line (see `launch_command`) on
    this test's free port."""
    return lambda script, *args, **kwargs: launch_command(script, *args, port=kwargs.pop("port", free_port), **kwargs)


@pytest.fixture(scope="session")
def tiny_codec_dir(tmp_path_factory):
    """A folder holding a tiny seeded EncodecModel (seed 0) and a matching AudioFormerFeatureExtractor
    (max_duration 2 s) saved with save_pretrained."""
    from audioformer.training.tiny_codec import build_tiny_feature_extractor

    path = tmp_path_factory.mktemp("tiny_codec")
    build_tiny_feature_extractor(path, seed=0, max_duration=2.0)
    return str(path)


@pytest.fixture(scope="session")
def tiny_feature_extractor(tiny_codec_dir):
    """AudioFormerFeatureExtractor over the tiny codec, codec loaded (max_duration 2 s = 150 frames)."""
    from audioformer.tokenization import AudioFormerFeatureExtractor

    fe = AudioFormerFeatureExtractor.from_pretrained(tiny_codec_dir)
    _ = fe.codec
    return fe


_HOLD_LOCK = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("folder_lock", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
lock = module.FolderLock(sys.argv[2], purpose="testing").acquire()
print("locked", flush=True)
sys.stdin.readline()  # hold until told to end
lock.release()
"""


@pytest.fixture
def lock_holder():
    """`lock_holder(folder)` starts another process that locks `folder` (it loads only tokenization/folder_lock.py,
    so it starts at once) and returns its Popen: `.communicate("\\n")` ends it cleanly, `.kill()` is kill -9."""
    import os
    import subprocess
    import sys

    import audioformer.tokenization.folder_lock

    started = []

    def start(folder):
        process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, audioformer.tokenization.folder_lock.__file__, os.fspath(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout.readline().strip() == "locked"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()
