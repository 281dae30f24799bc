"""What transformers' common model tests (`ModelTesterMixin`) check of a model, for the three AudioFormer classes.

Written for this project, in the spirit of that mixin: save / load round trips, hidden states and attentions (shapes,
configuration flags, gradients through them), determinism, batching equivalence, `inputs_embeds`, tuple outputs,
resizing the vocabulary, the attention implementations, `torch.export` and `torch.compile(fullgraph=True)`.

Head masking is not tested because it does not exist: transformers 5 removed `head_mask` from its models (BERT,
RoFormer), and AudioFormer refuses it with a TypeError instead of ignoring it.
"""

import inspect
import json

import pytest
import torch
from transformers import AutoModel

from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerModel,
)


PAD = 1
NUM_LAYERS, HIDDEN, HEADS = 2, 32, 4
LENGTHS = [12, 9, 4]  # a padded batch; `uniform` has no padding
NUM_LABELS = 3
MODEL_CLASSES = [AudioFormerModel, AudioFormerForMaskedLM, AudioFormerForAudioClassification]
IMPLEMENTATIONS = ["sdpa_per_clip", "sdpa", "eager"]


def tiny_config(**kwargs) -> AudioFormerConfig:
    return AudioFormerConfig(
        **{
            "hidden_size": HIDDEN,
            "num_hidden_layers": NUM_LAYERS,
            "num_attention_heads": HEADS,
            "intermediate_size": 64,
            "max_position_embeddings": 32,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "num_labels": NUM_LABELS,
            **kwargs,
        }
    )


def build(model_class, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return model_class(tiny_config(**kwargs)).eval()


def batch(lengths=LENGTHS, seed: int = 0) -> dict:
    """`(B, K=4, T)` ids of all codebooks, as the feature extractor returns them, and the `(B, T)` mask."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.full((len(lengths), 4, max(lengths)), PAD, dtype=torch.long)
    attention_mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        input_ids[i, :, :n] = torch.randint(3, 1027, (4, n), generator=generator)
        input_ids[i, :, 0], input_ids[i, :, n - 1] = 0, 2
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def with_labels(model_class, inputs: dict) -> dict:
    ids = inputs["input_ids"][:, 0]
    if model_class is AudioFormerForMaskedLM:
        labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.3, ids, -100)
        labels[:, 1] = ids[:, 1]  # at least one masked position per clip
        return {**inputs, "labels": labels}
    if model_class is AudioFormerForAudioClassification:
        return {**inputs, "labels": torch.arange(ids.shape[0]) % NUM_LABELS}
    return inputs


def main_output(model_class, outputs) -> torch.Tensor:
    return outputs.logits if model_class is not AudioFormerModel else outputs.last_hidden_state


def real_positions(model_class, output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The part of an output that does not depend on padding: all of it for the classifier's `(B, L)` logits."""
    return output if model_class is AudioFormerForAudioClassification else output[mask.bool()]


@pytest.fixture(params=MODEL_CLASSES, ids=lambda c: c.__name__)
def model_class(request):
    return request.param


@pytest.fixture(params=IMPLEMENTATIONS)
def attention(request):
    return request.param


# ---------------------------------------------------------------- signatures and round trips


def test_forward_signature(model_class):
    parameters = list(inspect.signature(model_class.forward).parameters)
    assert parameters[1:5] == ["input_ids", "attention_mask", "token_type_ids", "inputs_embeds"]
    assert model_class.main_input_name == "input_ids"


def test_save_load_round_trip(model_class, tmp_path):
    model = build(model_class)
    inputs = batch()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    reloaded = model_class.from_pretrained(tmp_path).eval()
    assert set(reloaded.state_dict()) == set(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
    with torch.no_grad():
        assert torch.equal(main_output(model_class, reloaded(**inputs)), main_output(model_class, model(**inputs)))
    # the attention implementation is runtime state, chosen again at load (or by the caller)
    assert "attn_implementation" not in json.loads((tmp_path / "config.json").read_text())
    eager = model_class.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    with torch.no_grad():
        torch.testing.assert_close(
            main_output(model_class, eager(**inputs)), main_output(model_class, model(**inputs)), atol=1e-5, rtol=0
        )


def test_base_model_loads_from_a_head_checkpoint_and_back(model_class, tmp_path):
    if model_class is AudioFormerModel:
        pytest.skip("the bare encoder is the base model")
    model = build(model_class)
    model.save_pretrained(tmp_path / "head")
    base = AutoModel.from_pretrained(tmp_path / "head").eval()
    assert type(base) is AudioFormerModel
    for name, tensor in model.roformer.state_dict().items():
        assert torch.equal(base.state_dict()[name], tensor), name
    base.save_pretrained(tmp_path / "base")
    head = model_class.from_pretrained(tmp_path / "base").eval()
    for name, tensor in base.state_dict().items():
        assert torch.equal(head.roformer.state_dict()[name], tensor), name


def test_mismatched_classifier_sizes_load_with_ignore_mismatched_sizes(tmp_path):
    build(AudioFormerForAudioClassification).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AudioFormerForAudioClassification.from_pretrained(tmp_path, num_labels=5)
    model = AudioFormerForAudioClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert model.classifier.weight.shape == (5, HIDDEN)


# ---------------------------------------------------------------- outputs


def test_hidden_states(model_class, attention):
    model = build(model_class, attn_implementation=attention)
    inputs = batch()
    mask = inputs["attention_mask"].bool()
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
        base = model if model_class is AudioFormerModel else model.roformer
        last = base(**inputs).last_hidden_state
    hidden_states = outputs.hidden_states
    assert len(hidden_states) == NUM_LAYERS + 1  # the embeddings, then each layer
    for state in hidden_states:
        assert state.shape == (len(LENGTHS), max(LENGTHS), HIDDEN)
        assert state[~mask].abs().max() == 0  # padding positions are 0 (documented)
    torch.testing.assert_close(hidden_states[-1], last)
    model.config.output_hidden_states = True  # the configuration's flag, as transformers' models read it
    with torch.no_grad():
        assert len(model(**inputs).hidden_states) == NUM_LAYERS + 1
    assert model(**inputs, output_hidden_states=False).hidden_states is None


def test_attentions(model_class, attention):
    """Any implementation returns the weights (eager computes them for that call), as eager does."""
    model = build(model_class, attn_implementation=attention)
    reference = build(model_class, attn_implementation="eager")
    inputs = batch()
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
        expected = reference(**inputs, output_attentions=True).attentions
    assert len(attentions) == NUM_LAYERS
    for weights, reference_weights in zip(attentions, expected):
        assert weights.shape == (len(LENGTHS), HEADS, max(LENGTHS), max(LENGTHS))
        torch.testing.assert_close(weights, reference_weights)
        for i, n in enumerate(LENGTHS):
            torch.testing.assert_close(weights[i, :, :n].sum(-1), torch.ones(HEADS, n))
            assert weights[i, :, :n, n:].abs().sum() == 0  # no weight on padding keys
    assert model.config._attn_implementation == attention  # only those calls ran eager
    if attention == "eager":  # transformers' configuration refuses the flag with any other implementation
        model.config.output_attentions = True
        with torch.no_grad():
            assert len(model(**inputs).attentions) == NUM_LAYERS


def test_gradients_reach_returned_hidden_states_and_attentions(model_class, attention):
    """`retain_grad()` on what the model returned gets a gradient: the returned tensors are on the autograd path
    (attribution methods read these gradients)."""
    model = build(model_class, attn_implementation=attention).train()
    outputs = model(**batch(), output_hidden_states=True, output_attentions=True)
    for tensor in (*outputs.hidden_states, *outputs.attentions):
        tensor.retain_grad()
    main_output(model_class, outputs).square().sum().backward()
    for i, state in enumerate(outputs.hidden_states):
        assert state.grad is not None and state.grad.abs().sum() > 0, f"hidden_states[{i}]"
    for i, weights in enumerate(outputs.attentions):
        assert weights.grad is not None and weights.grad.abs().sum() > 0, f"attentions[{i}]"


def test_tuple_outputs_match_the_dataclass(model_class):
    model = build(model_class)
    inputs = with_labels(model_class, batch())
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True, output_attentions=True)
        as_tuple = model(**inputs, output_hidden_states=True, output_attentions=True, return_dict=False)
        model.config.return_dict = False
        from_config = model(**inputs)
    assert isinstance(as_tuple, tuple) and isinstance(from_config, tuple)
    expected = outputs.to_tuple()
    assert len(as_tuple) == len(expected)
    for ours, theirs in zip(as_tuple, expected):
        if isinstance(theirs, tuple):
            for a, b in zip(ours, theirs):
                assert torch.equal(a, b)
        else:
            assert torch.equal(ours, theirs)
    torch.testing.assert_close(from_config[0], expected[0])  # (the call above ran eager attention)


def test_loss_and_gradients_reach_every_trained_parameter(model_class):
    if model_class is AudioFormerModel:
        pytest.skip("the bare encoder has no loss")
    model = build(model_class).train()
    loss = model(**with_labels(model_class, batch())).loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            assert name.endswith("embed_positions.weight"), name  # the frozen sinusoid table
            continue
        if "token_type_embeddings" in name:
            continue  # only row 0 is used (all codes are type 0); the others get no gradient, as in RoFormer
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


# ---------------------------------------------------------------- equivalences


def test_determinism(model_class, attention):
    model = build(model_class, attn_implementation=attention)
    inputs = batch()
    with torch.no_grad():
        first, second = (main_output(model_class, model(**inputs)) for _ in range(2))
    assert torch.equal(first, second)
    # training mode with dropout: the same seed gives the same result
    model = build(model_class, attn_implementation=attention, hidden_dropout_prob=0.1).train()
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        results.append(main_output(model_class, model(**inputs)).detach())
    assert torch.equal(*results)


def test_batching_equivalence(model_class, attention):
    """Each clip alone (no padding) gives what it gets inside a padded batch."""
    model = build(model_class, attn_implementation=attention)
    inputs = batch()
    with torch.no_grad():
        batched = main_output(model_class, model(**inputs))
        for i, n in enumerate(LENGTHS):
            alone = main_output(model_class, model(input_ids=inputs["input_ids"][i : i + 1, :, :n]))
            expected = batched[i : i + 1] if model_class is AudioFormerForAudioClassification else batched[i, :n]
            torch.testing.assert_close(alone.reshape(expected.shape), expected, atol=1e-5, rtol=1e-5)


def test_attention_implementations_agree(model_class):
    inputs = with_labels(model_class, batch())
    mask = inputs["attention_mask"]
    results = {}
    for attention in IMPLEMENTATIONS:
        model = build(model_class, attn_implementation=attention).train()
        outputs = model(**inputs)
        (outputs.loss if model_class is not AudioFormerModel else outputs.last_hidden_state.sum()).backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        results[attention] = real_positions(model_class, main_output(model_class, outputs).detach(), mask), grads
    output, grads = results["eager"]
    for attention in ("sdpa_per_clip", "sdpa"):
        torch.testing.assert_close(results[attention][0], output, atol=1e-5, rtol=1e-5)
        assert results[attention][1].keys() == grads.keys()
        for name in grads:
            torch.testing.assert_close(results[attention][1][name], grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_set_attn_implementation_switches_the_kernel(model_class):
    model = build(model_class)
    inputs = batch()
    with torch.no_grad():
        expected = real_positions(model_class, main_output(model_class, model(**inputs)), inputs["attention_mask"])
        for attention in IMPLEMENTATIONS:
            model.set_attn_implementation(attention)
            assert model.config._attn_implementation == attention
            output = real_positions(model_class, main_output(model_class, model(**inputs)), inputs["attention_mask"])
            torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)


def test_inputs_embeds(model_class):
    model = build(model_class)
    inputs = batch()
    row = inputs["input_ids"][:, 0]
    with torch.no_grad():
        embeds = model.get_input_embeddings()(row)
        from_ids = main_output(model_class, model(**inputs))
        from_embeds = main_output(model_class, model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]))
    torch.testing.assert_close(from_embeds, from_ids)
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids=row, inputs_embeds=embeds)
    with pytest.raises(ValueError, match="exactly one"):
        model(attention_mask=inputs["attention_mask"])


def test_head_mask_is_refused_not_ignored(model_class):
    model = build(model_class)
    with pytest.raises(TypeError, match="head_mask"):
        model(**batch(), head_mask=torch.ones(NUM_LAYERS, HEADS))


# ---------------------------------------------------------------- vocabulary


@pytest.mark.parametrize("new_size", [1000, 1100])
def test_resize_token_embeddings_save_and_reload(model_class, new_size, tmp_path):
    """Shrinking leaves `<MASK>` (1027) past the vocabulary: allowed, as transformers allows it (with a warning)."""
    model = build(model_class)
    inputs = batch()
    inputs["input_ids"] = inputs["input_ids"].clamp(max=999)
    model.resize_token_embeddings(new_size)
    assert model.config.vocab_size == new_size
    assert model.get_input_embeddings().weight.shape == (new_size, HIDDEN)
    if model_class is AudioFormerForMaskedLM:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
        assert model.cls.predictions.bias.shape == (new_size,)
    model.save_pretrained(tmp_path)
    reloaded = model_class.from_pretrained(tmp_path).eval()
    assert reloaded.config.vocab_size == new_size and reloaded.config.mask_token_id == 1027
    with torch.no_grad():
        output = main_output(model_class, reloaded(**inputs))
        assert torch.equal(output, main_output(model_class, model(**inputs)))
    if model_class is AudioFormerForMaskedLM:
        assert output.shape[-1] == new_size


# ---------------------------------------------------------------- torch.export, torch.compile


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_torch_export_matches_eager(model_class, padded):
    """The exported graph keeps the batch padded (no data-dependent shapes) and gives eager's results, also for
    batch sizes and lengths other than the traced ones."""
    model = build(model_class)
    inputs = batch(LENGTHS if padded else [12, 12, 12])
    batch_dim, seq_dim = torch.export.Dim("batch", max=16), torch.export.Dim("seq", min=2, max=32)
    exported = torch.export.export(
        model,
        (),
        dict(inputs),
        dynamic_shapes={"input_ids": {0: batch_dim, 2: seq_dim}, "attention_mask": {0: batch_dim, 1: seq_dim}},
    )
    for lengths in (LENGTHS if padded else [12, 12, 12], [7, 20, 3, 11] if padded else [5, 5]):
        other = batch(lengths, seed=len(lengths))
        with torch.no_grad():
            expected = main_output(model_class, model(**other))
            got = main_output(model_class, exported.module()(**other))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_class, padded",
    [(c, True) for c in MODEL_CLASSES] + [(AudioFormerForAudioClassification, False)],
    ids=lambda x: x.__name__ if isinstance(x, type) else ("padded" if x else "unpadded"),
)
def test_torch_compile_fullgraph_matches_eager(model_class, padded):
    """`torch.compile(fullgraph=True)`: forward and backward (loss and gradients) as in eager (inductor, the default
    backend; one unpadded case, as the unpadded graph differs only by having no mask)."""
    torch._dynamo.reset()
    inputs = with_labels(model_class, batch(LENGTHS if padded else [12, 12, 12]))
    eager, compiled_model = build(model_class).train(), build(model_class).train()
    compiled = torch.compile(compiled_model, fullgraph=True)
    results = []
    for model in (eager, compiled):
        outputs = model(**inputs)
        (outputs.loss if model_class is not AudioFormerModel else outputs.last_hidden_state.sum()).backward()
        results.append((main_output(model_class, outputs).detach(), model.parameters()))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-5, rtol=1e-5)
    for (name, a), b in zip(eager.named_parameters(), compiled_model.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)
