"""RoFormer / Lightning checkpoints -> AudioFormer classes, checked against transformers' RoFormer."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForMaskedLM, RoFormerConfig, RoFormerForMaskedLM, RoFormerModel

import audioformer.modeling_audioformer  # noqa: F401
from audioformer.modeling_audioformer import (
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerModel,
)
from audioformer.modeling_audioformer.convert_checkpoint import convert, main


SIZES = dict(
    vocab_size=1028,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
    pad_token_id=1,
)


def roformer_mlm():
    torch.manual_seed(0)
    return RoFormerForMaskedLM(RoFormerConfig(**SIZES)).eval()


def ids():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, 1027, (2, 20), generator=g)
    x[:, 0], x[:, -1] = 0, 2
    return x


def test_roformer_mlm_folder(tmp_path):
    reference = roformer_mlm()
    reference.save_pretrained(tmp_path / "roformer")
    model, report = convert(tmp_path / "roformer", task="mlm")
    assert isinstance(model, AudioFormerForMaskedLM)
    assert report.backbone_prefix == "roformer."
    assert not report.missing and not report.skipped
    assert len(report.mapped) >= len(reference.state_dict()) - 2  # tied decoder weights may be stored once
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(input_ids=ids()).logits, reference(input_ids=ids()).logits, atol=1e-5, rtol=1e-4
        )


def lightning_checkpoint(path, reference):
    """The layout of a PyTorch Lightning `.ckpt`: the LightningModule holds the HF model as `self.model`."""
    state = {"model." + k: v for k, v in reference.state_dict().items()}
    state["loss_fn.pos_weight"] = torch.ones(3)
    torch.save(
        {
            "epoch": 3,
            "global_step": 1000,
            "state_dict": state,
            "optimizer_states": [{"lr": 1e-4}],
            "hyper_parameters": {"lr": 1e-4},
        },
        path,
    )


def test_lightning_checkpoint_without_config(tmp_path):
    reference = roformer_mlm()
    lightning_checkpoint(tmp_path / "last.ckpt", reference)
    with pytest.raises(ValueError, match="num_attention_heads"):
        convert(tmp_path / "last.ckpt", task="base")
    model, report = convert(tmp_path / "last.ckpt", task="base", num_attention_heads=4)
    assert isinstance(model, AudioFormerModel)
    assert report.backbone_prefix == "model.roformer."
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    assert model.config.intermediate_size == 64 and model.config.max_position_embeddings == 128
    assert "loss_fn.pos_weight" in report.skipped
    assert any(k.startswith("model.cls.") for k in report.skipped)  # the MLM head has no place in the base model
    assert not report.missing
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(input_ids=ids()).last_hidden_state,
            reference.roformer(input_ids=ids()).last_hidden_state,
            atol=1e-5,
            rtol=1e-4,
        )
    text = report.summary()
    assert "loss_fn.pos_weight" in text and "model.roformer." in text


def test_roformer_model_safetensors_into_classifier(tmp_path):
    torch.manual_seed(0)
    backbone = RoFormerModel(RoFormerConfig(**SIZES)).eval()
    save_file(backbone.state_dict(), str(tmp_path / "backbone.safetensors"))
    model, report = convert(
        tmp_path / "backbone.safetensors", task="classification", num_attention_heads=4, num_labels=5
    )
    assert isinstance(model, AudioFormerForAudioClassification)
    assert report.backbone_prefix == ""
    assert sorted(report.missing) == ["classifier.bias", "classifier.weight"]  # the new head, reported
    torch.testing.assert_close(
        model.roformer.encoder.layer[1].output.dense.weight, backbone.encoder.layer[1].output.dense.weight
    )


def test_shape_mismatch_is_skipped_and_reported(tmp_path):
    reference = roformer_mlm()
    state = dict(reference.state_dict())
    state["roformer.embeddings.token_type_embeddings.weight"] = torch.zeros(7, 32)
    tied = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
    save_file({k: v.clone().contiguous() for k, v in state.items() if k not in tied}, str(tmp_path / "m.safetensors"))
    config = AudioFormerForMaskedLM.config_class(**{k: v for k, v in SIZES.items()})
    model, report = convert(tmp_path / "m.safetensors", task="mlm", config=config)
    reason = report.skipped["roformer.embeddings.token_type_embeddings.weight"]
    assert "(7, 32)" in reason
    assert report.missing == ["roformer.embeddings.token_type_embeddings.weight"]


class NotATensor:
    pass


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run arbitrary classes on load is rejected."""
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": {"x": NotATensor()}}, f)
    with pytest.raises(ValueError, match="pickled Python objects besides tensors"):
        convert(tmp_path / "evil.pt", task="base", num_attention_heads=4)
    # A torch.save file names the offending classes, and the object is never built.
    reference = roformer_mlm()
    torch.save({"state_dict": reference.state_dict(), "hyper_parameters": NotATensor()}, tmp_path / "hp.ckpt")
    with pytest.raises(ValueError, match="NotATensor"):
        convert(tmp_path / "hp.ckpt", task="base", num_attention_heads=4)


def test_roformer_config_token_ids_do_not_become_audioformers(tmp_path):
    """RoFormerConfig's default pad_token_id is 0, AudioFormer's <BOA>: copied, it would mask every clip's start."""
    torch.manual_seed(0)
    reference = RoFormerForMaskedLM(RoFormerConfig(**{**SIZES, "pad_token_id": 0})).eval()
    reference.save_pretrained(tmp_path / "roformer")
    model, report = convert(tmp_path / "roformer", task="mlm")
    assert model.config.pad_token_id == 1 and model.config.bos_token_id == 0
    assert any("pad_token_id=0" in note for note in report.notes)
    assert "pad_token_id=0" in report.summary()
    x = ids()
    with torch.no_grad():  # no mask given: <BOA> (id 0) must stay a real token
        torch.testing.assert_close(
            model.eval()(input_ids=x).logits, reference(input_ids=x).logits, atol=1e-5, rtol=1e-4
        )
    # An AudioFormer folder keeps its own ids.
    model.config.pad_token_id = 1
    model.save_pretrained(tmp_path / "audioformer")
    again, report = convert(tmp_path / "audioformer", task="mlm")
    assert again.config.pad_token_id == 1 and not report.notes


def test_cli_writes_safetensors_folder(tmp_path, capsys):
    reference = roformer_mlm()
    lightning_checkpoint(tmp_path / "last.ckpt", reference)
    out = tmp_path / "converted"
    main([str(tmp_path / "last.ckpt"), str(out), "--task", "mlm", "--num_attention_heads", "4"])
    assert "mapped:" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["backbone_prefix"] == "model.roformer." and "loss_fn.pos_weight" in report["skipped"]
    loaded = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert isinstance(loaded, AudioFormerForMaskedLM)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids()).logits, reference(input_ids=ids()).logits, atol=1e-5, rtol=1e-4
        )
