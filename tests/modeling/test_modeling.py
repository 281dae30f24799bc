"""AudioFormer models against transformers' RoFormer on shared weights, padding, codebooks, Auto round trips, heads."""

import json
import os

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForMaskedLM,
    RoFormerConfig,
    RoFormerForMaskedLM,
    RoFormerModel,
)

from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerModel,
)


PAD = 1
TINY = dict(
    vocab_size=1028,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
LENGTHS = [20, 13, 6]
# Clip by clip on packed tokens (the default without an accelerator), one batched masked SDPA call (the default with
# one), eager.
IMPLEMENTATIONS = ["sdpa_per_clip", "sdpa", "eager"]


def tiny_config(**kwargs):
    return AudioFormerConfig(**{**TINY, **kwargs})


def padded_batch(lengths=LENGTHS, seed=0):
    """Codes ids `(B, T)` (BOA, codes, EOA, then PAD) and the matching attention mask."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.full((len(lengths), max(lengths)), PAD, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(3, 1027, (n,), generator=generator)
        input_ids[i, 0], input_ids[i, n - 1] = 0, 2
        attention_mask[i, :n] = 1
    return input_ids, attention_mask


def build(cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(tiny_config(**kwargs)).eval()


def roformer_twin(model, cls):
    """A transformers RoFormer (eager) holding `model`'s weights."""
    config = RoFormerConfig(
        **{**TINY, "rotary_value": model.config.rotary_value, "pad_token_id": PAD}, attn_implementation="eager"
    )
    twin = cls(config).eval()
    result = twin.load_state_dict(model.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return twin


def test_state_dicts_load_both_ways_with_no_missing_keys():
    for ours, theirs in ((AudioFormerModel, RoFormerModel), (AudioFormerForMaskedLM, RoFormerForMaskedLM)):
        model = build(ours)
        twin = roformer_twin(model, theirs)
        result = build(ours, seed=1).load_state_dict(twin.state_dict(), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        assert set(model.state_dict()) == set(twin.state_dict())


@pytest.mark.parametrize("attn_implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("rotary_value", [False, True])
def test_matches_roformer_on_real_positions(attn_implementation, rotary_value):
    model = build(AudioFormerModel, attn_implementation=attn_implementation, rotary_value=rotary_value)
    twin = roformer_twin(model, RoFormerModel)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        ours = model(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        theirs = twin(input_ids, attention_mask=attention_mask, output_hidden_states=True)
    real = attention_mask.bool()
    assert ours.last_hidden_state.shape == theirs.last_hidden_state.shape == (3, 20, 32)
    torch.testing.assert_close(ours.last_hidden_state[real], theirs.last_hidden_state[real], atol=1e-4, rtol=0)
    assert len(ours.hidden_states) == len(theirs.hidden_states) == 3
    for a, b in zip(ours.hidden_states, theirs.hidden_states):
        torch.testing.assert_close(a[real], b[real], atol=1e-4, rtol=0)
    # Padding positions are documented as 0 (only attention sees the padded layout).
    assert ours.last_hidden_state[~real].abs().max() == 0


@pytest.fixture(params=IMPLEMENTATIONS)
def attention(request):
    """Runs a test on each attention implementation."""
    return request.param


def test_default_attention_is_chosen_once_by_the_machine(monkeypatch):
    from audioformer.modeling_audioformer import modeling_audioformer as module

    assert build(AudioFormerModel).config._attn_implementation == "sdpa_per_clip"  # this machine has no accelerator
    monkeypatch.setattr(module, "has_accelerator", lambda: True)
    assert build(AudioFormerModel).config._attn_implementation == "sdpa"
    assert build(AudioFormerModel, attn_implementation="eager").config._attn_implementation == "eager"
    model = build(AudioFormerModel)
    model.set_attn_implementation("sdpa_per_clip")
    assert model.config._attn_implementation == "sdpa_per_clip"


@pytest.mark.parametrize(
    "ours, theirs, output",
    [(AudioFormerModel, RoFormerModel, "last_hidden_state"), (AudioFormerForMaskedLM, RoFormerForMaskedLM, "logits")],
)
def test_attention_implementations_match_roformer(attention, ours, theirs, output):
    model = build(ours, attn_implementation=attention)
    twin = roformer_twin(model, theirs)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        ours = getattr(model(input_ids, attention_mask=attention_mask), output)
        theirs = getattr(twin(input_ids, attention_mask=attention_mask), output)
    real = attention_mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-4, rtol=0)


@pytest.mark.parametrize("attn_implementation", IMPLEMENTATIONS)
def test_matches_roformer_without_padding(attn_implementation):
    model = build(AudioFormerModel, attn_implementation=attn_implementation)
    twin = roformer_twin(model, RoFormerModel)
    input_ids, _ = padded_batch([9, 9])
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids).last_hidden_state, twin(input_ids).last_hidden_state, atol=1e-4, rtol=0
        )


def test_sdpa_and_eager_agree_in_training_mode_without_dropout():
    torch.manual_seed(0)
    sdpa = build(AudioFormerModel).train()
    eager = build(AudioFormerModel, attn_implementation="eager").train()
    eager.load_state_dict(sdpa.state_dict())
    input_ids, attention_mask = padded_batch()
    real = attention_mask.bool()
    grads = []
    for model in (sdpa, eager):
        hidden = model(input_ids, attention_mask=attention_mask).last_hidden_state
        hidden[real].square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attn_implementation", IMPLEMENTATIONS)
def test_padding_invariance_of_the_backbone(attn_implementation):
    model = build(AudioFormerModel, attn_implementation=attn_implementation)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        batch = model(input_ids, attention_mask=attention_mask).last_hidden_state
        for i, n in enumerate(LENGTHS):
            alone = model(input_ids[i : i + 1, :n]).last_hidden_state
            torch.testing.assert_close(batch[i, :n], alone[0], atol=1e-5, rtol=0)


def test_padding_invariance_of_the_classifier():
    model = build(AudioFormerForAudioClassification, num_labels=5)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        batch = model(input_ids, attention_mask=attention_mask)
        for i, n in enumerate(LENGTHS):
            alone = model(input_ids[i : i + 1, :n])
            torch.testing.assert_close(batch.pooled_output[i], alone.pooled_output[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(batch.logits[i], alone.logits[0], atol=1e-5, rtol=0)
    # The pooled output is the masked mean of the last hidden states (paper 4.2).
    with torch.no_grad():
        hidden = model.roformer(input_ids, attention_mask=attention_mask).last_hidden_state
    n = LENGTHS[1]
    torch.testing.assert_close(batch.pooled_output[1], hidden[1, :n].mean(0), atol=1e-5, rtol=0)


def test_attention_mask_is_derived_from_the_pad_id():
    input_ids, attention_mask = padded_batch()
    model = build(AudioFormerModel)
    classifier = build(AudioFormerForAudioClassification, num_labels=3)
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids).last_hidden_state, model(input_ids, attention_mask=attention_mask).last_hidden_state
        )
        torch.testing.assert_close(
            classifier(input_ids).logits, classifier(input_ids, attention_mask=attention_mask).logits
        )
        # Without a mask, treating PAD as a real token would change the result: the derivation is what matters.
        unmasked = model(input_ids, attention_mask=torch.ones_like(attention_mask)).last_hidden_state
    assert not torch.allclose(unmasked[1, : LENGTHS[1]], model(input_ids).last_hidden_state[1, : LENGTHS[1]])


@pytest.mark.parametrize("codebook_index", [0, 2])
def test_codebook_row_selection(codebook_index):
    input_ids, attention_mask = padded_batch()
    codes = torch.stack([input_ids, (input_ids + 7) % 1024, (input_ids + 11) % 1024, (input_ids + 13) % 1024], 1)
    codes[attention_mask.unsqueeze(1).expand_as(codes) == 0] = PAD  # (B, K=4, T)
    row = codes[:, codebook_index]
    model = build(AudioFormerModel, codebook_index=codebook_index)
    classifier = build(AudioFormerForAudioClassification, codebook_index=codebook_index, num_labels=3)
    mlm = build(AudioFormerForMaskedLM, codebook_index=codebook_index)
    with torch.no_grad():
        torch.testing.assert_close(model(codes).last_hidden_state, model(row).last_hidden_state)
        torch.testing.assert_close(classifier(codes).logits, classifier(row).logits)
        torch.testing.assert_close(mlm(codes).logits, mlm(row).logits)
        other = model(codes[:, (codebook_index + 1) % 4]).last_hidden_state
    assert not torch.allclose(model(codes).last_hidden_state, other)


def test_codebook_shape_errors():
    model = build(AudioFormerModel, codebook_index=3)
    input_ids, _ = padded_batch()
    with pytest.raises(ValueError, match="codebook"):
        model(input_ids.unsqueeze(1).expand(-1, 2, -1))  # K=2 codebooks, row 3 wanted
    with pytest.raises(ValueError, match="shape"):
        model(input_ids[:, None, None])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.full((1, 65), 5))


def test_auto_round_trips(tmp_path):
    import audioformer.modeling_audioformer  # noqa: F401  (registers the Auto classes)

    input_ids, attention_mask = padded_batch()
    cases = [
        (AudioFormerModel, AutoModel, lambda out: out.last_hidden_state, {}),
        (AudioFormerForMaskedLM, AutoModelForMaskedLM, lambda out: out.logits, {}),
        (
            AudioFormerForAudioClassification,
            AutoModelForAudioClassification,
            lambda out: out.logits,
            dict(num_labels=4),
        ),
    ]
    for cls, auto_cls, output_of, kwargs in cases:
        path = tmp_path / cls.__name__
        model = build(cls, **kwargs)
        model.save_pretrained(path)
        assert os.path.isfile(path / "model.safetensors")
        assert not any(f.endswith((".bin", ".pt")) for f in os.listdir(path))
        saved = json.loads((path / "config.json").read_text())
        assert saved["model_type"] == "audioformer"
        assert saved["auto_map"]["AutoConfig"].endswith("AudioFormerConfig")
        assert isinstance(AutoConfig.from_pretrained(path), AudioFormerConfig)
        reloaded = auto_cls.from_pretrained(path).eval()
        assert type(reloaded) is cls
        with torch.no_grad():
            torch.testing.assert_close(
                output_of(reloaded(input_ids, attention_mask=attention_mask)),
                output_of(model(input_ids, attention_mask=attention_mask)),
            )
    assert (
        "AutoModelForMaskedLM"
        in json.loads((tmp_path / "AudioFormerForMaskedLM" / "config.json").read_text())["auto_map"]
    )


def test_mlm_checkpoint_into_classifier_keeps_the_backbone(tmp_path):
    mlm = build(AudioFormerForMaskedLM)
    mlm.save_pretrained(tmp_path)
    classifier = AutoModelForAudioClassification.from_pretrained(tmp_path, num_labels=3)
    assert isinstance(classifier, AudioFormerForAudioClassification)
    backbone, loaded = mlm.roformer.state_dict(), classifier.roformer.state_dict()
    assert backbone.keys() == loaded.keys()
    for name in backbone:
        torch.testing.assert_close(loaded[name], backbone[name], msg=name)
    assert classifier.classifier.weight.shape == (3, 32)


def test_tied_embeddings(tmp_path):
    model = build(AudioFormerForMaskedLM)
    assert model.cls.predictions.decoder.weight is model.roformer.embeddings.word_embeddings.weight
    with torch.no_grad():
        model.roformer.embeddings.word_embeddings.weight[5] += 1.0
    model.save_pretrained(tmp_path)
    reloaded = AudioFormerForMaskedLM.from_pretrained(tmp_path)
    assert reloaded.cls.predictions.decoder.weight is reloaded.roformer.embeddings.word_embeddings.weight
    torch.testing.assert_close(reloaded.cls.predictions.decoder.weight, model.cls.predictions.decoder.weight)


def test_mlm_loss_ignores_minus_100():
    model = build(AudioFormerForMaskedLM)
    input_ids, attention_mask = padded_batch()
    labels = torch.full_like(input_ids, -100)
    labels[0, [2, 5, 7]] = input_ids[0, [2, 5, 7]]
    labels[1, 3] = 1000
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    picked = labels != -100
    expected = F.cross_entropy(out.logits[picked].double(), labels[picked])
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Labels of all codebooks (B, K, T) read row codebook_index like the inputs.
    out_k = model(input_ids, attention_mask=attention_mask, labels=torch.stack([labels, labels * 0], 1))
    assert out_k.loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(use_reentrant):
    input_ids, attention_mask = padded_batch()
    labels = torch.tensor([0, 2, 1])
    grads = []
    for checkpointing in (False, True):
        model = build(AudioFormerForAudioClassification, num_labels=3).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
            assert model.roformer.encoder.layer[0].gradient_checkpointing
        model(input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, msg=name)


def test_output_attentions_with_any_implementation(attention):
    """The weights are computed (by eager attention, for that call) whatever the model's implementation."""
    model = build(AudioFormerModel, attn_implementation=attention)
    twin = roformer_twin(model, RoFormerModel)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        ours = model(input_ids, attention_mask=attention_mask, output_attentions=True).attentions
        theirs = twin(input_ids, attention_mask=attention_mask, output_attentions=True).attentions
    assert len(ours) == 2 and ours[0].shape == (3, 4, 20, 20)
    n = LENGTHS[1]
    torch.testing.assert_close(ours[1][1, :, :n, :n], theirs[1][1, :, :n, :n], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[0][1, :, :n].sum(-1), torch.ones(4, n))
    assert ours[0][1, :, :n, n:].abs().max() == 0  # no weight on padding keys
    assert model.config._attn_implementation == attention  # only that call ran eager


def test_single_label_loss_is_cross_entropy():
    model = build(AudioFormerForAudioClassification, num_labels=4)
    input_ids, attention_mask = padded_batch()
    labels = torch.tensor([3, 0, 1])
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert model.config.problem_type == "single_label_classification"
    assert out.loss.item() == pytest.approx(F.cross_entropy(out.logits.double(), labels).item(), rel=1e-5)


def test_multi_label_loss_is_lsep_by_default_and_bce_on_request():
    """The model's losses against eq. 7 and eq. 6 written out in float64 (not the library's functions)."""
    input_ids, attention_mask = padded_batch()
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]])  # the second clip has no label
    model = build(AudioFormerForAudioClassification, num_labels=4, problem_type="multi_label_classification")
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    s, y = out.logits.detach().double(), labels.double()
    # eq. 7 per clip; a clip without a positive has no term and is left out of the mean (2 clips here, not 3)
    lsep = torch.log1p((torch.exp(s) * (1 - y)).sum(1) * (torch.exp(-s) * y).sum(1))
    assert out.loss.item() == pytest.approx(lsep[[0, 2]].mean().item(), rel=1e-5)

    model_bce = build(
        AudioFormerForAudioClassification,
        num_labels=4,
        problem_type="multi_label_classification",
        multi_label_loss="bce",
    )
    out_bce = model_bce(input_ids, attention_mask=attention_mask, labels=labels)
    s = out_bce.logits.detach().double()
    # eq. 6: a sum over the classes per clip, averaged over the clips (every clip counts)
    bce = ((torch.log1p(torch.exp(s)) * (1 - y)).sum(1) + (torch.log1p(torch.exp(-s)) * y).sum(1)).mean()
    assert out_bce.loss.item() == pytest.approx(bce.item(), rel=1e-5)
    with pytest.raises(ValueError, match="multi-hot"):
        model(input_ids, attention_mask=attention_mask, labels=labels[:, :3])


def test_classifier_outputs_and_tuple_form():
    model = build(AudioFormerForAudioClassification, num_labels=4)
    input_ids, attention_mask = padded_batch()
    labels = torch.tensor([3, 0, 1])
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask, labels=labels, output_hidden_states=True)
        as_tuple = model(input_ids, attention_mask=attention_mask, labels=labels, return_dict=False)
    assert out.logits.shape == (3, 4) and out.pooled_output.shape == (3, 32)
    assert len(out.hidden_states) == 3 and out.attentions is None
    torch.testing.assert_close(as_tuple[0], out.loss)
    torch.testing.assert_close(as_tuple[1], out.logits)
    torch.testing.assert_close(as_tuple[2], out.pooled_output)


def test_attention_mask_of_any_dtype_and_shape(attention):
    model = build(AudioFormerModel, attn_implementation=attention)
    input_ids, attention_mask = padded_batch()
    real = attention_mask.bool()
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).last_hidden_state
        for mask in (attention_mask.float(), attention_mask.bool(), attention_mask[:, None].expand(-1, 4, -1)):
            hidden = model(input_ids, attention_mask=mask).last_hidden_state
            torch.testing.assert_close(hidden[real], expected[real], atol=1e-6, rtol=0)
            assert hidden[~real].abs().max() == 0
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model(input_ids, attention_mask=attention_mask[:, :-1])


def test_inputs_embeds_and_token_type_ids_match_roformer(attention):
    model = build(AudioFormerModel, attn_implementation=attention)
    twin = roformer_twin(model, RoFormerModel)
    input_ids, attention_mask = padded_batch()
    token_type_ids = torch.randint(0, 2, input_ids.shape, generator=torch.Generator().manual_seed(1))
    embeds = model.get_input_embeddings()(input_ids)
    real = attention_mask.bool()
    with torch.no_grad():
        ours = model(inputs_embeds=embeds, attention_mask=attention_mask, token_type_ids=token_type_ids)
        theirs = twin(inputs_embeds=embeds, attention_mask=attention_mask, token_type_ids=token_type_ids)
        plain = model(input_ids, attention_mask=attention_mask).last_hidden_state
    torch.testing.assert_close(ours.last_hidden_state[real], theirs.last_hidden_state[real], atol=1e-4, rtol=0)
    assert not torch.allclose(ours.last_hidden_state[real], plain[real])  # the token types were used
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids, inputs_embeds=embeds)


def test_all_padding_row_and_batch_of_one(attention):
    """A clip of padding only gets zeros (no NaN, also in the gradients) and leaves the other clips unchanged."""
    model = build(AudioFormerForAudioClassification, num_labels=3, attn_implementation=attention).train()
    input_ids, attention_mask = padded_batch()
    input_ids = torch.cat([input_ids, torch.full((1, input_ids.shape[1]), PAD)])
    attention_mask = torch.cat([attention_mask, torch.zeros_like(attention_mask[:1])])
    out = model(input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1, 2, 1]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.pooled_output[3].abs().max() == 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        three = model(input_ids[:3], attention_mask=attention_mask[:3]).pooled_output
        one = model(input_ids[1:2, : LENGTHS[1]]).pooled_output  # batch of one, no padding at all
    torch.testing.assert_close(out.pooled_output[:3].detach(), three, atol=1e-5, rtol=0)
    torch.testing.assert_close(one[0], three[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_autocast_and_weights(attention, dtype):
    """Rotary runs in float32 and back; the losses are float32. Half-precision results stay close to float32."""
    model = build(
        AudioFormerForAudioClassification,
        num_labels=4,
        problem_type="multi_label_classification",
        attn_implementation=attention,
    )
    input_ids, attention_mask = padded_batch()
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask, labels=labels)
        with torch.autocast("cpu", dtype=dtype):
            autocast = model(input_ids, attention_mask=attention_mask, labels=labels)
        half = model.to(dtype)(input_ids, attention_mask=attention_mask, labels=labels)
    tolerance = 0.05 if dtype == torch.bfloat16 else 0.01
    for out in (autocast, half):
        assert out.loss.dtype == torch.float32
        torch.testing.assert_close(out.pooled_output.float(), expected.pooled_output, atol=tolerance, rtol=0)
        assert out.loss.item() == pytest.approx(expected.loss.item(), abs=tolerance)
    assert half.pooled_output.dtype == dtype


def test_saved_auto_map_is_complete(tmp_path):
    """Any AudioFormer folder loads as any AudioFormer Auto class with remote code, e.g. a classifier from MLM."""
    mlm = build(AudioFormerForMaskedLM)
    mlm.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    for auto_class in ("AutoConfig", "AutoModel", "AutoModelForMaskedLM", "AutoModelForAudioClassification"):
        assert auto_class in auto_map, auto_class
    # What transformers does with trust_remote_code=True (the installed project would otherwise win in-process).
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    for auto_class, ref in auto_map.items():
        cls = get_class_from_dynamic_module(ref, str(tmp_path))
        assert cls.__module__.startswith("transformers_modules.") and cls.__name__ == ref.split(".")[1], auto_class
    remote_classifier = get_class_from_dynamic_module(auto_map["AutoModelForAudioClassification"], str(tmp_path))
    classifier = remote_classifier.from_pretrained(tmp_path, num_labels=3)
    torch.testing.assert_close(
        classifier.roformer.embeddings.word_embeddings.weight, mlm.roformer.embeddings.word_embeddings.weight
    )


def test_trainer_does_not_rescale_the_batch_mean_losses(tmp_path):
    """The forward takes **kwargs, so without `accepts_loss_kwargs = False` Trainer would pass num_items_in_batch
    and treat the (batch-mean) loss as a sum over items."""
    from transformers import Trainer, TrainingArguments

    model = build(AudioFormerForAudioClassification, num_labels=3)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, gradient_accumulation_steps=2)
    trainer = Trainer(model=model, args=args)
    assert trainer.model_accepts_loss_kwargs is False
    input_ids, attention_mask = padded_batch()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 2, 1]))
    with torch.no_grad():
        loss = trainer.compute_loss(model, inputs, num_items_in_batch=torch.tensor(100))
        torch.testing.assert_close(loss, model(**inputs).loss)
