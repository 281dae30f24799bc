"""Bad label values get an error naming the split, the row and the column (training/labels.py, read_labels);
they used to become class names silently ("0.5", "{'x': 1}", "['a']") or, for a ClassLabel's -1, the last class."""

import datasets
import pytest

from audioformer.training.labels import read_labels


def test_values_that_are_no_label():
    cases = [
        ({"label": [0.0, 1.0, 0.5]}, r"row 2, column 'label': 0.5 is a fraction"),
        ({"label": [[["a"]], [["b"]]]}, r"row 0, column 'label': \['a'\] is a list inside a list .*rows \[0, 1\]"),
        ({"label": [{"x": 1}, {"x": 2}]}, r"row 0, column 'label': \{'x': 1\} is a dict, not a class name"),
    ]
    for columns, message in cases:
        with pytest.raises(ValueError, match="Split 'validation', " + message):
            read_labels(datasets.Dataset.from_dict(columns), "label", "validation")


def test_class_label_minus_one_is_missing_and_whole_floats_are_indices():
    features = datasets.Features({"label": datasets.ClassLabel(names=["a", "b"])})
    with pytest.raises(ValueError, match=r"1 row\(s\) have no label in column 'label', rows \[2\]"):
        read_labels(datasets.Dataset.from_dict({"label": [0, 1, -1]}, features=features), "label", "train")
    assert read_labels(datasets.Dataset.from_dict({"label": [0.0, 2.0, 1.0]}), "label", "train") == (
        ["0", "2", "1"],
        False,
    )
