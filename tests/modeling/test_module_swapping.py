"""Tools that swap or wrap `query` / `key` / `value` (dynamic int8 quantization, peft's LoRA, forward hooks) change
what the attention computes: its forward calls each projection module, never reads their `.weight`."""

import copy

import pytest
import torch

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification


TINY = dict(
    vocab_size=1028,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    classifier_dropout=0.0,
    num_labels=3,
)
IMPLEMENTATIONS = ["sdpa_per_clip", "sdpa", "eager"]


def classifier(attn_implementation="sdpa_per_clip", seed=0):
    torch.manual_seed(seed)
    config = AudioFormerConfig(**TINY, attn_implementation=attn_implementation)
    return AudioFormerForAudioClassification(config).eval()


def padded_batch(lengths=(20, 13, 6), seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.ones(len(lengths), max(lengths), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(3, 1027, (n,), generator=generator)
        input_ids[i, 0], input_ids[i, n - 1] = 0, 2
        attention_mask[i, :n] = 1
    return input_ids, attention_mask


@pytest.mark.parametrize("attention", IMPLEMENTATIONS)
def test_forward_hooks_on_query_key_value_run(attention):
    model = classifier(attention)
    calls = []
    for layer in model.roformer.encoder.layer:
        for name in ("query", "key", "value"):
            getattr(layer.attention.self, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    with torch.no_grad():
        model(*padded_batch())
    assert sorted(calls) == sorted(["query", "key", "value"] * TINY["num_hidden_layers"])


@pytest.mark.parametrize("attention", IMPLEMENTATIONS)
def test_a_hook_that_changes_the_value_projection_changes_the_logits(attention):
    model = classifier(attention)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        before = model(input_ids, attention_mask=attention_mask).logits
        model.roformer.encoder.layer[0].attention.self.value.register_forward_hook(lambda m, i, out: out * 0)
        after = model(input_ids, attention_mask=attention_mask).logits
    assert (before - after).abs().max() > 1e-3


@pytest.mark.parametrize("attention", IMPLEMENTATIONS)
def test_dynamic_int8_quantization_runs_and_is_close_to_float32(attention):
    model = classifier(attention)
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    assert type(quantized.roformer.encoder.layer[0].attention.self.query) is not torch.nn.Linear
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        reference = model(input_ids, attention_mask=attention_mask).logits
        logits = quantized(input_ids, attention_mask=attention_mask).logits
    difference = (logits - reference).abs().max().item()
    # int8 weights and activations (per-tensor scales) on a 2-layer model whose logits are O(0.5): the error is a few
    # 1e-3; a broken path (e.g. one projection skipped) is off by O(0.1).
    assert 0 < difference < 0.03, difference


peft = pytest.importorskip("peft")


def lora(model, init_lora_weights=False):
    config = peft.LoraConfig(
        target_modules=["query", "value"],
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        init_lora_weights=init_lora_weights,
        modules_to_save=["classifier"],
    )
    return peft.get_peft_model(model, config)


@pytest.mark.parametrize("attention", IMPLEMENTATIONS)
def test_lora_adapters_change_the_logits(attention):
    base = classifier(attention)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        reference = base(input_ids, attention_mask=attention_mask).logits
        adapted = lora(copy.deepcopy(base)).eval()
        logits = adapted(input_ids, attention_mask=attention_mask).logits
    assert (logits - reference).abs().max() > 1e-3
    with torch.no_grad(), adapted.disable_adapter():
        torch.testing.assert_close(adapted(input_ids, attention_mask=attention_mask).logits, reference)


def test_lora_trains_saves_reloads_and_merges(tmp_path):
    torch.manual_seed(0)
    model = lora(classifier(), init_lora_weights=True)  # LoRA's default: B = 0, the adapted model starts as the base
    input_ids, attention_mask = padded_batch()
    labels = torch.tensor([0, 2, 1])
    query = model.base_model.model.roformer.encoder.layer[0].attention.self.query
    frozen = query.base_layer.weight.detach().clone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    losses = []
    for _ in range(15):
        loss = model(input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        assert query.lora_B["default"].weight.grad.abs().sum() > 0  # the adapter is on the loss's gradient path
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert query.lora_B["default"].weight.abs().sum() > 0
    torch.testing.assert_close(query.base_layer.weight, frozen, rtol=0, atol=0)

    model.eval()
    with torch.no_grad():
        trained = model(input_ids, attention_mask=attention_mask).logits
        with model.disable_adapter():
            # Only the adapters (and the classifier copy peft saves) trained: without them the output is the base's.
            base_only = model(input_ids, attention_mask=attention_mask).logits
        torch.testing.assert_close(base_only, classifier()(input_ids, attention_mask=attention_mask).logits)
    assert (trained - base_only).abs().max() > 1e-3

    model.save_pretrained(tmp_path / "adapter")
    reloaded = peft.PeftModel.from_pretrained(classifier(), tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids, attention_mask=attention_mask).logits, trained)

    merged = reloaded.merge_and_unload()
    assert type(merged) is AudioFormerForAudioClassification
    assert type(merged.roformer.encoder.layer[0].attention.self.query) is torch.nn.Linear
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids, attention_mask=attention_mask).logits, trained)
    merged.save_pretrained(tmp_path / "merged")
    plain = AudioFormerForAudioClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids, attention_mask=attention_mask).logits, trained)
