"""AudioFormerConfig: the paper's defaults, RoFormer's field names, round trips and ValueErrors naming the field."""

import pytest
from transformers import AutoConfig, RoFormerConfig

from audioformer.modeling_audioformer import AudioFormerConfig


def test_defaults_are_the_papers():
    config = AudioFormerConfig()
    assert config.model_type == "audioformer"
    assert (config.vocab_size, config.num_hidden_layers, config.hidden_size) == (1028, 12, 768)
    assert (config.num_attention_heads, config.intermediate_size) == (12, 3072)
    assert (config.bos_token_id, config.pad_token_id, config.eos_token_id, config.mask_token_id) == (0, 1, 2, 1027)
    assert config.max_position_embeddings >= 752
    assert (config.num_codebooks, config.codebook_index) == (4, 0)
    assert config.multi_label_loss == "lsep"
    assert config.embedding_size == config.hidden_size


def test_field_names_are_roformers():
    roformer_fields = set(RoFormerConfig().to_dict())
    shared = [
        "vocab_size",
        "embedding_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "max_position_embeddings",
        "type_vocab_size",
        "initializer_range",
        "layer_norm_eps",
        "rotary_value",
    ]
    audioformer_fields = set(AudioFormerConfig().to_dict())
    for name in shared:
        assert name in roformer_fields and name in audioformer_fields, name


def test_round_trip(tmp_path):
    config = AudioFormerConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        codebook_index=2,
        multi_label_loss="bce",
        classifier_dropout=0.2,
    )
    config.save_pretrained(tmp_path)
    for loaded in (AudioFormerConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert isinstance(loaded, AudioFormerConfig)
        assert (loaded.hidden_size, loaded.codebook_index, loaded.multi_label_loss) == (64, 2, "bce")
        assert loaded.classifier_dropout == 0.2


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(hidden_size=100, num_attention_heads=12), "num_attention_heads"),
        (dict(hidden_size=36, num_attention_heads=4), "even"),  # head size 9: rotary pairs need an even size
        (dict(codebook_index=4), "codebook_index"),
        (dict(codebook_index=-1), "codebook_index"),
        (dict(num_codebooks=2, codebook_index=3), "codebook_index"),
        (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
        (dict(classifier_dropout=-0.1), "classifier_dropout"),
        (dict(multi_label_loss="focal"), "multi_label_loss"),
        (dict(pad_token_id=5000), "pad_token_id"),
        (dict(mask_token_id=-1), "mask_token_id"),
        (dict(num_hidden_layers=-1), "num_hidden_layers"),
        (dict(vocab_size=0), "vocab_size"),
    ],
)
def test_bad_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        AudioFormerConfig(**kwargs)


def test_valid_edge_values_pass():
    AudioFormerConfig(num_codebooks=8, codebook_index=7)
    AudioFormerConfig(hidden_size=64, num_attention_heads=4, classifier_dropout=0.0, multi_label_loss="bce")


def test_special_ids_past_a_resized_vocabulary_are_allowed():
    """As in transformers (which warns): `resize_token_embeddings(1000)` leaves `<MASK>` = 1027 outside."""
    config = AudioFormerConfig(vocab_size=1000)
    assert config.mask_token_id == 1027 and config.pad_token_id == 1


def test_decision_thresholds_round_trip_and_validation(tmp_path):
    config = AudioFormerConfig(
        num_labels=3, problem_type="multi_label_classification", decision_thresholds=[0.5, -2, 3.25]
    )
    config.save_pretrained(tmp_path)
    assert AudioFormerConfig.from_pretrained(tmp_path).decision_thresholds == [0.5, -2, 3.25]
    assert AudioFormerConfig().decision_thresholds is None
    with pytest.raises(ValueError, match="decision_thresholds` has 2 entries for 3 labels"):
        AudioFormerConfig(num_labels=3, decision_thresholds=[0.0, 1.0])
    with pytest.raises(ValueError, match="decision_thresholds` has 2 entries for 3 labels"):
        AudioFormerConfig(id2label={0: "a", 1: "b", 2: "c"}, decision_thresholds=[0.0, 1.0])
    with pytest.raises(ValueError, match="finite numbers"):
        AudioFormerConfig(num_labels=2, decision_thresholds=[float("nan"), 0.0])
    changed = AudioFormerConfig(num_labels=3, decision_thresholds=[0.0, 0.0, 0.0])
    changed.id2label = {0: "a", 1: "b"}  # the classes changed, the thresholds did not
    with pytest.raises(ValueError, match="set it to None"):
        changed.raise_if_inconsistent()
