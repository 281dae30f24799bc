"""Tests of training/labels.py: reading, checking and encoding label columns."""

import datasets
import pytest

from audioformer.modeling_audioformer import AudioFormerConfig
from audioformer.training.labels import LabelSpace, encode_labels, read_labels


def test_label_errors_name_rows():
    ds = datasets.Dataset.from_dict({"label": ["a", None, "b", ""]})
    with pytest.raises(ValueError, match=r"rows \[1, 3\]"):
        read_labels(ds, "label", "train")
    with pytest.raises(ValueError, match="No label column 'tag'"):
        read_labels(ds, "tag", "train")
    with pytest.raises(ValueError, match=r"rows \[1\].*\['z'\]"):
        encode_labels([["a"], ["a", "z"]], {"a": 0, "b": 1}, True, "validation")
    rows, multi = read_labels(datasets.Dataset.from_dict({"l": [["x", "y"], ["y"]]}), "l", "train")
    assert multi and rows == [["x", "y"], ["y"]]
    assert encode_labels(rows, {"x": 0, "y": 1}, True, "train") == [[0, 1], [1]]


def test_label_space():
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"input_ids": [[[0, 2]]] * 3, "l": ["10", "9", "b"]}),
            "validation": datasets.Dataset.from_dict({"input_ids": [[[0, 2]]] * 2, "l": ["b", "9"]}),
        }
    )
    labels = LabelSpace.from_datasets(splits, "l")
    assert labels.names == ["9", "10", "b"] and not labels.multi_label  # numbers in numeric order
    encoded = labels.add_label_ids(splits)
    assert encoded["validation"]["label_ids"] == [2, 0] and encoded["train"].column_names == ["input_ids", "label_ids"]
    assert labels.config_kwargs()["problem_type"] == "single_label_classification"
    with pytest.raises(ValueError, match="--loss lsep is for multi-label"):
        labels.config_kwargs("lsep")
    # A fine-tuned checkpoint's classes win; a validation label it lacks is named with its row.
    config = AudioFormerConfig(id2label={0: "b", 1: "10"}, problem_type="single_label_classification")
    with pytest.raises(ValueError, match=r"Split 'validation': 1 row\(s\).*rows \[1\].*\['9'\]"):
        LabelSpace.from_datasets(datasets.DatasetDict({"validation": splits["validation"]}), "l", config)
    # A pretraining checkpoint (default LABEL_i names) does not fix the classes.
    assert LabelSpace.from_datasets(splits, "l", AudioFormerConfig()).names == ["9", "10", "b"]
    with pytest.raises(ValueError, match="at least 2 classes"):
        LabelSpace.from_datasets(datasets.DatasetDict({"train": datasets.Dataset.from_dict({"l": ["a", "a"]})}), "l")
    mixed = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"l": [["a"], ["b"]]}),
            "validation": datasets.Dataset.from_dict({"l": ["a"]}),
        }
    )
    with pytest.raises(ValueError, match="list per clip in one split"):
        LabelSpace.from_datasets(mixed, "l")


def test_empty_label_lists_are_counted_and_reported(caplog):
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"l": [["a"], [], ["a", "b"], []]}),
            "validation": datasets.Dataset.from_dict({"l": [["b"], ["a"]]}),
            "test": datasets.Dataset.from_dict({"l": [[], ["b"]]}),
        }
    )
    with caplog.at_level("WARNING", logger="audioformer.training.labels"):
        labels = LabelSpace.from_datasets(splits, "l")
    assert labels.empty_label_lists == {"train": 2, "test": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "Split 'train': 2 of 4 clip(s) have an empty label list" in warnings[0] and "rows [1, 3]" in warnings[0]
    assert "Split 'test': 1 of 2" in warnings[1]
    encoded = labels.add_label_ids(
        datasets.DatasetDict({"train": splits["train"].add_column("input_ids", [[[0]]] * 4)})
    )
    assert encoded["train"]["label_ids"] == [[0], [], [0, 1], []]
    caplog.clear()
    with caplog.at_level("WARNING", logger="audioformer.training.labels"):
        assert LabelSpace.from_datasets(splits, "l", warn=False).empty_label_lists == {"train": 2, "test": 1}
    assert not caplog.records
