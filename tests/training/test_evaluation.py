"""The evaluation protocol's checks and split names (training/evaluation.py), without running anything."""

import json

import pytest
from transformers import TrainingArguments

from audioformer.training.arguments import DataTrainingArguments
from audioformer.training.evaluation import EvaluationArguments, check_test_source, source_has_split, split_names


def test_the_test_split_is_never_the_validation_split(tmp_path):
    data = DataTrainingArguments(data_dir=str(tmp_path), eval_split_name="eval")
    with pytest.raises(ValueError, match="selected on its test split"):
        check_test_source(data, EvaluationArguments(test_split_name="eval"))
    with pytest.raises(ValueError, match="training split"):
        check_test_source(data, EvaluationArguments(test_split_name="train"))
    csv = DataTrainingArguments(train_file="a.csv", validation_file="b.csv")
    with pytest.raises(ValueError, match="also the training or validation file"):
        check_test_source(csv, EvaluationArguments(test_file="b.csv"))
    with pytest.raises(ValueError, match="goes with --train_file"):
        check_test_source(data, EvaluationArguments(test_file="c.csv"))
    with pytest.raises(ValueError, match="not both"):
        EvaluationArguments(test_split_name="test", test_file="c.csv")
    check_test_source(DataTrainingArguments(data_dir=str(tmp_path)), EvaluationArguments(test_split_name="eval"))


def test_split_names_say_where_each_metric_comes_from(tmp_path):
    training_args = TrainingArguments(output_dir=str(tmp_path / "out"), seed=7, use_cpu=True, report_to=[])
    (tmp_path / "audioset" / "train").mkdir(parents=True)
    (tmp_path / "audioset" / "eval").mkdir()
    audioset = DataTrainingArguments(data_dir=str(tmp_path / "audioset"), validation_split_percentage=10)
    assert source_has_split(audioset, "validation") is False
    assert split_names(audioset, training_args, EvaluationArguments(test_split_name="eval")) == {
        "eval": "train (10% seeded hold-out, seed 7)",
        "test": "eval",
    }
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation", "test"]}))
    codes = DataTrainingArguments(tokenized_dataset=str(tmp_path / "codes"))
    assert split_names(codes, training_args, EvaluationArguments()) == {"eval": "validation"}
    files = DataTrainingArguments(train_file="a.csv", validation_file="b.csv")
    assert split_names(files, training_args, EvaluationArguments(test_file="data/test.csv")) == {
        "eval": "validation",
        "test": "test.csv",
    }
    hub = DataTrainingArguments(dataset_name="org/some-set")
    assert source_has_split(hub, "validation") is None
    assert "or, if absent" in split_names(hub, training_args, EvaluationArguments())["eval"]
