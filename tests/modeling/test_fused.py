"""
A fused model (`config.input_codebooks`): reads several codebooks of a frame at once, its frame embedding the sum
of one embedding per codebook, its masked-LM a head per codebook. Checked against naive per-codebook loops; the
single-codebook model stays as it was (tests/modeling/test_modeling.py holds the RoFormer parity tests).
"""

import json

import pytest
import torch
import torch.nn.functional as F

from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerModel,
)
from audioformer.modeling_audioformer.export_onnx import example_batch
from audioformer.modeling_audioformer.modeling_audioformer import fused_mlm_loss


V = 1028
FUSED = [0, 1, 2, 3]


def clips(lengths, seed=0):
    """`(B, 4, T)` ids of clips `<BOA> codes <EOA>` padded with `<PAD>`, and the `(B, T)` mask."""
    return example_batch(AudioFormerConfig(input_codebooks=FUSED), lengths, seed=seed)


# ----- config -----


def test_config_validates_input_codebooks(tiny_config):
    for bad, message in (
        ([0, 4], "holds 4"),
        ([2, -1], "holds -1"),
        ([1, 1], "more than once"),
        ([], "non-empty"),
    ):
        with pytest.raises(ValueError, match=message):
            tiny_config(input_codebooks=bad)
    config = tiny_config(input_codebooks=[0, 1])
    config.codebook_index = 1
    with pytest.raises(ValueError, match="first input codebook"):
        config.raise_if_inconsistent()


def test_one_codebook_is_the_paper_model(tiny_config, tmp_path):
    config = tiny_config(input_codebooks=[2])
    assert config.input_codebooks is None and config.codebook_index == 2 and not config.is_fused
    # a single-codebook config is saved exactly as before fused models existed: no new key
    tiny_config().save_pretrained(tmp_path)
    assert "input_codebooks" not in json.loads((tmp_path / "config.json").read_text())
    fused = tiny_config(input_codebooks=[1, 3])
    assert fused.codebook_index == 1 and fused.read_codebooks == [1, 3]
    fused.save_pretrained(tmp_path / "fused")
    assert AudioFormerConfig.from_pretrained(tmp_path / "fused").input_codebooks == [1, 3]


# ----- embedding -----


def test_frame_embedding_is_the_sum_of_one_embedding_per_codebook(tiny_config):
    torch.manual_seed(0)
    model = AudioFormerModel(tiny_config(input_codebooks=[1, 3], hidden_dropout_prob=0.0)).eval()
    ids, _ = clips([7], seed=1)
    table = model.embeddings.word_embeddings.weight
    assert table.shape == (2 * V, 32)
    # naive: codebook j's table is rows j*V..(j+1)*V of the one table
    summed = table[:V][ids[0, 1]] + table[V:][ids[0, 3]] + model.embeddings.token_type_embeddings.weight[0]
    expected = model.embeddings.LayerNorm(summed)
    hidden = model(ids, output_hidden_states=True).hidden_states[0][0]
    torch.testing.assert_close(hidden, expected)


def test_fused_model_reads_its_rows_only_and_needs_them_all(tiny_config):
    torch.manual_seed(0)
    model = AudioFormerModel(tiny_config(input_codebooks=[1, 3])).eval()
    ids, mask = clips([9, 6])
    out = model(ids, attention_mask=mask).last_hidden_state
    other = ids.clone()
    other[:, [0, 2], 1:4] = 500  # rows it does not read
    torch.testing.assert_close(model(other, attention_mask=mask).last_hidden_state, out)
    changed = ids.clone()
    changed[:, 3, 2] = 500  # a row it reads
    assert not torch.allclose(model(changed, attention_mask=mask).last_hidden_state[:, 2], out[:, 2])
    with pytest.raises(ValueError, match=r"\(batch, num_codebooks, seq_len\)"):
        model(ids[:, 1])
    with pytest.raises(ValueError, match="reads codebook 3"):
        model(ids[:, :2])


def test_padding_and_attention_implementations_agree(tiny_config):
    """Packed padded batch == each clip alone == eager attention over the padded layout."""
    torch.manual_seed(0)
    model = AudioFormerModel(tiny_config(input_codebooks=FUSED)).eval()
    ids, mask = clips([11, 5, 8])
    batched = model(ids, attention_mask=mask).last_hidden_state
    for i, n in enumerate([11, 5, 8]):
        alone = model(ids[i : i + 1, :, :n]).last_hidden_state[0]
        torch.testing.assert_close(batched[i, :n], alone, atol=1e-5, rtol=1e-5)
        assert (batched[i, n:] == 0).all()
    eager = model(ids, attention_mask=mask, output_attentions=True).last_hidden_state
    torch.testing.assert_close(eager, batched, atol=1e-5, rtol=1e-5)


# ----- masked LM: a head per codebook, loss = mean over codebooks -----


def test_heads_and_loss_against_a_naive_per_codebook_loop(tiny_config):
    torch.manual_seed(0)
    model = AudioFormerForMaskedLM(tiny_config(input_codebooks=[0, 2, 3])).eval()
    decoder = model.get_output_embeddings()
    assert decoder.weight is model.get_input_embeddings().weight  # each head's weights are its codebook's table
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
    ids, mask = clips([10, 7])
    labels = torch.full((2, 10, 3), -100)
    labels[0, [2, 5], :] = ids[0][[0, 2, 3]][:, [2, 5]].T  # frames 2 and 5 of clip 0, all three codebooks
    labels[1, 3, :] = ids[1, [0, 2, 3], 3]
    labels[1, 4, 1] = ids[1, 2, 4]  # codebook 2 has one more masked position than the others
    out = model(ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (2, 10, 3, V)

    hidden = model.roformer(ids, attention_mask=mask).last_hidden_state
    transformed = model.cls.predictions.transform(hidden)
    table, bias = model.roformer.embeddings.word_embeddings.weight, model.cls.predictions.bias
    losses = []
    for j in range(3):
        logits_j = transformed @ table[j * V : (j + 1) * V].T + bias[j * V : (j + 1) * V]
        torch.testing.assert_close(out.logits[:, :, j], logits_j, atol=1e-5, rtol=1e-5)
        losses.append(F.cross_entropy(logits_j.reshape(-1, V), labels[..., j].reshape(-1), ignore_index=-100))
    torch.testing.assert_close(out.loss, torch.stack(losses).mean())
    # not the mean over all masked tokens, which weighs codebook 2 more here
    pooled = F.cross_entropy(out.logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
    assert not torch.isclose(out.loss, pooled)


def test_fused_loss_skips_codebooks_without_masked_positions_and_checks_shapes():
    logits = torch.randn(1, 4, 2, V)
    labels = torch.full((1, 4, 2), -100)
    labels[0, 1, 0] = 7
    torch.testing.assert_close(
        fused_mlm_loss(logits, labels), F.cross_entropy(logits[0, 1, 0][None], labels[0, 1, 0:1])
    )
    with pytest.raises(ValueError, match="num_input_codebooks"):
        fused_mlm_loss(logits, labels.transpose(1, 2))


def test_fused_mlm_trains_and_ties_after_loading(tiny_config, tmp_path):
    torch.manual_seed(0)
    model = AudioFormerForMaskedLM(tiny_config(input_codebooks=FUSED))
    ids, mask = clips([12, 9])
    labels = ids.transpose(1, 2).masked_fill(torch.rand(2, 12, 1) > 0.3, -100).contiguous()
    labels[:, 0] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(5):
        loss = model(ids, attention_mask=mask, labels=labels).loss
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first
    model.save_pretrained(tmp_path)
    loaded = AudioFormerForMaskedLM.from_pretrained(tmp_path).eval()
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, model.eval()(ids, attention_mask=mask).logits)


def test_fused_classifier_pools_frames(tiny_config):
    torch.manual_seed(0)
    model = AudioFormerForAudioClassification(tiny_config(input_codebooks=[1, 3], num_labels=3)).eval()
    ids, mask = clips([9, 6])
    out = model(ids, attention_mask=mask, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss.isfinite()
    hidden = model.roformer(ids, attention_mask=mask).last_hidden_state
    expected = torch.stack([hidden[0, :9].mean(0), hidden[1, :6].mean(0)])
    torch.testing.assert_close(out.pooled_output, expected)
    # the classifier picks the rows itself: also from a (B, K, T) attention mask, or none (padding ids)
    torch.testing.assert_close(model(ids).logits, out.logits)


def test_zero_layers_is_a_bag_of_the_frame_embeddings(tiny_config):
    """`num_hidden_layers=0`: the pooled output is the mean over the clip's frames of LayerNorm(sum of its codebooks'
    embedding rows + the type-0 row), written out here row by row; masked-LM pretraining refuses such a model."""
    torch.manual_seed(0)
    config = tiny_config(input_codebooks=FUSED, num_hidden_layers=0, num_labels=3)
    model = AudioFormerForAudioClassification(config).eval()
    ids, mask = clips([9, 6])
    out = model(ids, attention_mask=mask, labels=torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    emb = model.roformer.embeddings
    expected = []
    for b, n in enumerate([9, 6]):
        frames = [
            sum(emb.word_embeddings.weight[ids[b, j, t] + j * V] for j in range(4))
            + emb.token_type_embeddings.weight[0]
            for t in range(n)
        ]
        expected.append(emb.LayerNorm(torch.stack(frames)).mean(0))
    torch.testing.assert_close(out.pooled_output, torch.stack(expected))
    assert out.loss.isfinite() and out.hidden_states is None
    with pytest.raises(ValueError, match="num_hidden_layers >= 1"):
        AudioFormerForMaskedLM(config)


def test_compiled_graph_keeps_padding_and_agrees(tiny_config):
    """Under torch.compile the batch stays padded (no packing); the fused embedding traces, same states."""
    torch.manual_seed(0)
    model = AudioFormerModel(tiny_config(input_codebooks=[0, 2])).eval()
    ids, mask = clips([9, 6])
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(input_ids=ids, attention_mask=mask).last_hidden_state,
            model(input_ids=ids, attention_mask=mask).last_hidden_state,
            atol=1e-5,
            rtol=1e-5,
        )
