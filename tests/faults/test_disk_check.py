"""Defect 7 of issue 23: the training disk check counted 12 bytes per parameter, but every checkpoint and the final
folder also hold `codec/` and the remote code (tiny model: 0.79 MB estimated, 2.6 MB per checkpoint written), so a
run on a too-small disk passed the check and died at its first save."""

import os

import pytest
from conftest import STEPS, folder_bytes, mlm_args, run_mlm
from transformers import TrainingArguments

from audioformer.modeling_audioformer import AudioFormerConfig
from audioformer.training.checkpointing import run_bytes
from audioformer.training.tiny_codec import TINY_MODEL


def test_the_estimate_covers_what_a_run_writes(full_run, tiny_codec_dir):
    checkpoint = folder_bytes(os.path.join(full_run, "checkpoint-8"))
    final = folder_bytes(full_run, skip={f"checkpoint-{s}" for s in (4, 8, 12)} | {".audioformer.lock"})
    config = AudioFormerConfig(**TINY_MODEL, num_codebooks=4)
    args = TrainingArguments("unused", save_strategy="steps", use_cpu=True, report_to="none")
    estimate = run_bytes(config, args, tiny_codec_dir)
    assert checkpoint + final <= estimate <= 1.5 * (checkpoint + final), (checkpoint, final, estimate)


@pytest.mark.slow  # a run_mlm.py subprocess (or two)
def test_a_too_small_disk_is_refused_before_training(codes_dir, tiny_codec_dir, small_disk):
    out = str(small_disk(3) / "out")  # the old estimate (0.79 MB) fits; one checkpoint (2.6 MB) and the final do not
    returncode, output = run_mlm(mlm_args(codes_dir, tiny_codec_dir, out, *STEPS), check=False)
    assert returncode != 0
    assert f"error: --output_dir {out}: its disk has" in output and "Traceback" not in output
    assert "needed for one checkpoint and the final model" in output
    assert "'loss'" not in output and not any(n.startswith(("checkpoint", "tmp-")) for n in os.listdir(out))
