"""Tests of training/data.py: the tokenized cache of the scripts is never stale."""

import os

import numpy as np
import pytest
import soundfile as sf
from transformers import TrainingArguments

from audioformer.training.arguments import DataTrainingArguments, ModelArguments
from audioformer.training.data import prepare_code_datasets


def write_clip(path, seed, seconds):
    sf.write(path, np.random.default_rng(seed).standard_normal(int(24000 * seconds)).astype(np.float32) * 0.3, 24000)


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data" / "train"
    folder.mkdir(parents=True)
    for i in range(3):
        write_clip(folder / f"clip{i}.wav", seed=i, seconds=0.4)
    return tmp_path / "data"


def prepare(model_args, data_args, output_dir):
    training_args = TrainingArguments(str(output_dir), do_train=True, use_cpu=True, report_to="none")
    return prepare_code_datasets(model_args, data_args, training_args, need_eval=False)


def test_the_default_cache_notices_an_edited_file(tiny_codec_dir, data_dir, tmp_path, caplog):
    """Defect: the default cache was named by the file paths only, so a replaced file kept its old codes."""
    model_args = ModelArguments(feature_extractor_name=tiny_codec_dir, cache_dir=str(tmp_path / "cache"))
    data_args = DataTrainingArguments(data_dir=str(data_dir), preprocessing_batch_size=1)
    first, feature_extractor = prepare(model_args, data_args, tmp_path / "out")
    first = list(first["train"]["input_ids"])
    write_clip(data_dir / "train" / "clip0.wav", seed=10, seconds=0.6)  # replaced by another clip
    with caplog.at_level("WARNING"):
        second, _ = prepare(model_args, data_args, tmp_path / "out")
    assert "clip0.wav (size" in caplog.text and "tokenizing it again" in caplog.text
    assert len(os.listdir(tmp_path / "cache" / "audioformer-tokenized")) == 1  # refreshed in place
    audio, sr = sf.read(data_dir / "train" / "clip0.wav", dtype="float32")
    fresh = feature_extractor(audio, sampling_rate=sr, padding="longest")["input_ids"][0].tolist()
    rows = dict(zip(second["train"]["source_file"], second["train"]["input_ids"]))
    assert rows[str(data_dir / "train" / "clip0.wav")] == fresh
    assert list(second["train"]["input_ids"])[1:] == first[1:]


def test_a_named_cache_with_other_files_is_an_error(tiny_codec_dir, data_dir, tmp_path):
    model_args = ModelArguments(feature_extractor_name=tiny_codec_dir)
    data_args = DataTrainingArguments(data_dir=str(data_dir), tokenized_cache_dir=str(tmp_path / "codes"))
    prepare(model_args, data_args, tmp_path / "out")
    write_clip(data_dir / "train" / "clip3.wav", seed=3, seconds=0.4)  # one more clip in the folder
    with pytest.raises(ValueError, match=r"codes holds codes of other input files .*1 new: .*clip3.wav"):
        prepare(model_args, data_args, tmp_path / "out")
    data_args.overwrite_cache = True
    assert len(prepare(model_args, data_args, tmp_path / "out")[0]["train"]) == 4
