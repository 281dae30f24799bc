"""Tests of training/checkpointing.py and the output-folder claim of training/runs.py: complete-or-absent checkpoints,
`--resume_from_checkpoint last`, and the checks that run before any work."""

import json
import os

import pytest
import torch
from transformers import TrainingArguments

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForMaskedLM
from audioformer.tokenization import folder_lock
from audioformer.tokenization.folder_lock import FolderInUseError, FolderNotWritableError
from audioformer.training.arguments import ModelArguments
from audioformer.training.checkpointing import AtomicCheckpointTrainer, checkpoint_bytes, find_resume_checkpoint
from audioformer.training.collators import DataCollatorForCodeMLM
from audioformer.training.runs import claim_output_dir, resolve_checkpoint


TINY = "hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32"


def fake_checkpoint(path, files=("trainer_state.json", "model.safetensors", "optimizer.pt")):
    os.makedirs(path)
    for name in files:
        with open(os.path.join(path, name), "w") as f:
            f.write("{}" if name.endswith(".json") else "x")


def test_last_complete_checkpoint_skips_incomplete_ones_with_reasons(tmp_path, caplog):
    fake_checkpoint(tmp_path / "checkpoint-10")
    fake_checkpoint(tmp_path / "checkpoint-20", files=("model.safetensors",))  # killed during an in-place save
    fake_checkpoint(tmp_path / "checkpoint-25", files=("trainer_state.json", "model.safetensors"))  # no optimizer
    fake_checkpoint(tmp_path / "tmp-checkpoint-30", files=("model.safetensors",))  # killed during a staged save
    fake_checkpoint(tmp_path / "checkpoint-5")
    last, skipped = find_resume_checkpoint(str(tmp_path))
    assert last == str(tmp_path / "checkpoint-10")
    assert [os.path.basename(p) for p, _ in skipped] == ["tmp-checkpoint-30", "checkpoint-25", "checkpoint-20"]
    assert "interrupted" in skipped[0][1] and "no optimizer state" in skipped[1][1]
    assert "no trainer_state.json" in skipped[2][1]

    args = TrainingArguments(str(tmp_path), resume_from_checkpoint="last", do_train=True, use_cpu=True)
    with caplog.at_level("WARNING"):
        assert resolve_checkpoint(args) == str(tmp_path / "checkpoint-10")
    assert "skipping" in caplog.text and "tmp-checkpoint-30" in caplog.text and "checkpoint-20:" in caplog.text

    args.resume_from_checkpoint = str(tmp_path / "checkpoint-20")  # named explicitly: an error, not a crash later
    with pytest.raises(ValueError, match="checkpoint-20 cannot be resumed from: no trainer_state.json"):
        resolve_checkpoint(args)
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 1')  # cut off
    (tmp_path / "checkpoint-5" / "optimizer.pt").unlink()
    args.resume_from_checkpoint = "last"
    with pytest.raises(
        ValueError, match=r"no checkpoint to resume from in .*no complete checkpoint-\* folder; 5 incomplete"
    ):
        resolve_checkpoint(args)


class _Codes(torch.utils.data.Dataset):
    def __init__(self, n=16, length=12):
        generator = torch.Generator().manual_seed(0)
        self.rows = [torch.randint(3, 1027, (1, length), generator=generator) for _ in range(n)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {"input_ids": self.rows[i]}


def _trainer(output_dir, eval_dataset=None, **kwargs):
    config = AudioFormerConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    args = TrainingArguments(
        str(output_dir),
        per_device_train_batch_size=4,
        num_train_epochs=2,
        save_strategy="steps",
        save_steps=2,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        **kwargs,
    )
    collator = DataCollatorForCodeMLM(codebook_index=0, seed=0)
    return AtomicCheckpointTrainer(
        model=AudioFormerForMaskedLM(config),
        args=args,
        train_dataset=_Codes(),
        eval_dataset=eval_dataset,
        data_collator=collator,
    )


def test_checkpoints_are_complete_or_absent(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run", save_total_limit=2)
    trainer.train()
    names = sorted(os.listdir(tmp_path / "run"))
    assert names == ["checkpoint-6", "checkpoint-8"]  # renamed, rotated; nothing staged left behind
    state = json.loads((tmp_path / "run" / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and find_resume_checkpoint(str(tmp_path / "run"))[0].endswith("checkpoint-8")

    # A save that dies half-way (after the weights, before the optimizer) leaves no checkpoint-4.
    trainer = _trainer(tmp_path / "killed")
    real = trainer._save_optimizer_and_scheduler

    def die_at_step_4(output_dir):
        if trainer.state.global_step == 4:
            raise KeyboardInterrupt("killed during the save")
        real(output_dir)

    monkeypatch.setattr(trainer, "_save_optimizer_and_scheduler", die_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    names = sorted(os.listdir(tmp_path / "killed"))
    assert names == ["checkpoint-2", "tmp-checkpoint-4"]
    staged = os.listdir(tmp_path / "killed" / "tmp-checkpoint-4" / "checkpoint-4")
    assert "model.safetensors" in staged and "optimizer.pt" not in staged
    last, skipped = find_resume_checkpoint(str(tmp_path / "killed"))
    assert last.endswith("checkpoint-2") and skipped[0][0].endswith("tmp-checkpoint-4")
    trainer = _trainer(tmp_path / "killed")  # resuming replaces the leftover when it saves step 4 again
    trainer.train(resume_from_checkpoint=last)
    assert sorted(os.listdir(tmp_path / "killed")) == [f"checkpoint-{s}" for s in (2, 4, 6, 8)]


def test_best_model_checkpoint_is_the_final_folder(tmp_path):
    trainer = _trainer(
        tmp_path / "run",
        eval_dataset=_Codes(n=4),
        eval_strategy="steps",
        eval_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        save_total_limit=1,
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert os.path.isdir(best) and os.path.dirname(best) == str(tmp_path / "run")  # not the staging folder
    last = json.loads((tmp_path / "run" / "checkpoint-8" / "trainer_state.json").read_text())
    assert last["best_model_checkpoint"] == best  # what a resumed run loads at its end


def test_checkpoint_size_estimate():
    config = AudioFormerConfig()
    params = sum(p.numel() for p in AudioFormerForMaskedLM(config).roformer.parameters())
    steps = TrainingArguments("unused", save_strategy="steps", use_cpu=True, report_to="none")
    assert checkpoint_bytes(config, steps) == 12 * params  # weights + AdamW's two moments, float32
    only_model = TrainingArguments("unused", save_strategy="no", use_cpu=True, report_to="none")
    assert checkpoint_bytes(config, only_model) == 4 * params


def test_claim_output_dir_fails_before_any_work(tmp_path, monkeypatch, lock_holder):
    model_args = ModelArguments(config_overrides=TINY)
    (tmp_path / "a_file").write_text("")
    args = TrainingArguments(str(tmp_path / "a_file" / "out"), use_cpu=True, report_to="none")
    with pytest.raises(FolderNotWritableError, match="a_file/out"):
        claim_output_dir(args, model_args)

    class Usage:
        free = 1000

    monkeypatch.setattr(folder_lock.shutil, "disk_usage", lambda path: Usage())
    args = TrainingArguments(str(tmp_path / "full_disk"), use_cpu=True, report_to="none")
    with pytest.raises(FolderNotWritableError, match=r"--output_dir .*full_disk: its disk has 0.00 GiB free"):
        claim_output_dir(args, model_args)
    assert not (tmp_path / "full_disk" / folder_lock.LOCK_FILE).exists()  # released after the failed check
    monkeypatch.undo()

    holder = lock_holder(tmp_path / "busy")
    args = TrainingArguments(str(tmp_path / "busy"), use_cpu=True, report_to="none")
    with pytest.raises(FolderInUseError, match=f"busy is in use by another run: pid {holder.pid}"):
        claim_output_dir(args, model_args)
