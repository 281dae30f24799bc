"""FT2 with a fused anchor (all codebooks of a frame) and single-codebook or fused positives."""

import math

import datasets
import pytest
import torch
from transformers import TrainingArguments

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification, AudioFormerModel
from audioformer.training.tiny_codec import TINY_MODEL
from audioformer.training.trainer import AudioClassificationTrainer, check_positive_models, load_positive_models


TINY = dict(**TINY_MODEL, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def naive_mpc(features, tau):
    """Eq. 8 for the anchors (view 0 of each clip), looped in float64, averaged over the clips."""
    feats = torch.nn.functional.normalize(features.double(), dim=-1)
    batch, views, _ = feats.shape
    total = 0.0
    for b in range(batch):
        neg = sum(
            math.exp(float(feats[b, 0] @ feats[a, c]) / tau) for a in range(batch) if a != b for c in range(views)
        )
        pos = sum(math.exp(-float(feats[b, 0] @ feats[b, c]) / tau) for c in range(1, views))
        total += math.log1p(neg * pos)
    return total / batch


def code_batch(batch_size=6, length=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 1027, (batch_size, 4, length), generator=g)
    ids[:, :, 0], ids[:, :, -1] = 0, 2
    mask = torch.ones(batch_size, length, dtype=torch.long)
    ids[0, :, -5:] = 1
    ids[0, :, -6] = 2
    mask[0, -5:] = 0
    return ids, mask


def model(cls, seed, **config):
    torch.manual_seed(seed)
    return cls(AudioFormerConfig(**TINY, **config))


def test_fused_anchor_with_single_and_fused_positives_is_eq9(tmp_path):
    anchor = model(AudioFormerForAudioClassification, 0, input_codebooks=[0, 1, 2, 3], num_labels=3)
    positives = [model(AudioFormerModel, 1, codebook_index=1), model(AudioFormerModel, 2, input_codebooks=[2, 3])]
    check_positive_models(positives, anchor.config)  # a fused anchor shares rows with its positives: allowed
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    data = datasets.Dataset.from_dict({"x": [0]})
    trainer = AudioClassificationTrainer(
        model=anchor, args=args, train_dataset=data, positive_models=positives, mpc_alpha=0.7, mpc_temperature=0.05
    )
    ids, mask = code_batch()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    anchor.train()
    loss = trainer.compute_loss(anchor, {"input_ids": ids, "attention_mask": mask, "labels": labels})

    # Independent path: the single positive gets its row as (B, T); the fused positive gets rows it does not read
    # scrambled (it must read rows 2 and 3 only); pooled by hand.
    out = anchor(input_ids=ids, attention_mask=mask)
    classification = torch.nn.functional.cross_entropy(out.logits.double(), labels)
    scrambled = ids.clone()
    scrambled[:, :2, 1:-6] = 700
    m = mask[..., None].float()
    with torch.no_grad():
        hidden = [
            positives[0].eval()(input_ids=ids[:, 1], attention_mask=mask).last_hidden_state,
            positives[1].eval()(input_ids=scrambled, attention_mask=mask).last_hidden_state,
        ]
    pooled = [(h * m).sum(1) / m.sum(1) for h in hidden]
    features = torch.stack([out.pooled_output] + pooled, dim=1).detach()
    expected = 0.7 * classification.item() + 0.3 * naive_mpc(features, 0.05)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_positive_checks_compare_the_rows_read(tmp_path):
    fused_anchor = AudioFormerConfig(**TINY, input_codebooks=[0, 1, 2, 3])
    same_view = model(AudioFormerModel, 1, input_codebooks=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"rows \[0, 1, 2, 3\], as the anchor model does"):
        check_positive_models([same_view], fused_anchor)
    with pytest.raises(ValueError, match=r"rows \[2, 3\], as p0 does"):
        check_positive_models(
            [model(AudioFormerModel, 1, input_codebooks=[2, 3])] * 2, fused_anchor, names=["p0", "p1"]
        )
    # the paper's anchor on C1 with a fused positive of C2 + C3 + C4
    check_positive_models([model(AudioFormerModel, 1, input_codebooks=[1, 2, 3])], AudioFormerConfig(**TINY))
    same_view.save_pretrained(tmp_path / "fused")
    with pytest.raises(ValueError, match="a codebook row can't be given"):
        load_positive_models([str(tmp_path / "fused")], None, codebook_indices=[2])
