"""Defects 4 and 5 of issue 23: corrupt codes were trusted (inverted bytes crashed training with `IndexError: index
out of range in self`, out-of-range ids trained silently, a damaged shard was merged on resume), and unfinished or
damaged outputs stopped with datasets' errors naming nothing."""

import json
import os
import shutil

import datasets
import pytest
from conftest import tokenize, write_codes

from audioformer.tokenization import tokenize_dataset as td
from audioformer.tokenization.code_integrity import CHECKSUMS_FILE, CorruptCodesError


def copy(finished, tmp_path):
    out = str(tmp_path / "codes")
    shutil.copytree(finished, out)
    return out


def flip_a_byte(path, at=0.6):
    data = bytearray(open(path, "rb").read())
    data[int(len(data) * at)] ^= 0xFF
    open(path, "wb").write(data)


def arrow_file(folder):
    return os.path.join(folder, next(n for n in sorted(os.listdir(folder)) if n.endswith(".arrow")))


def test_finished_splits_carry_checksums(finished):
    for split in ("train", "validation"):
        with open(os.path.join(finished, split, CHECKSUMS_FILE)) as f:
            files = json.load(f)["files"]
        assert {"state.json", "dataset_info.json", os.path.basename(arrow_file(os.path.join(finished, split)))} <= set(
            files
        )


def test_inverted_bytes_in_a_split_are_refused_at_load(finished, tmp_path):
    out = copy(finished, tmp_path)
    path = arrow_file(os.path.join(out, "train"))
    flip_a_byte(path)
    with pytest.raises(CorruptCodesError, match=f"{path} is corrupt .*Tokenize it again"):
        td.load_tokenized_dataset(out)


def test_out_of_range_ids_name_the_first_bad_row(tmp_path):
    out = write_codes(tmp_path / "codes", num_clips=20)  # no checksums: as written by an older pre-tokenizer
    ds = datasets.load_from_disk(out)["train"]
    rows = ds.to_dict()["input_ids"]
    rows[13][3][5] = 2000  # codebook 3, which a C1 run does not read: it used to train silently
    rows[17][0][2] = -143
    features = ds.features
    bad = datasets.Dataset.from_dict({"input_ids": rows, "length": ds["length"]}, features=features)
    shutil.rmtree(out)
    datasets.DatasetDict({"train": bad}).save_to_disk(out)
    with pytest.raises(
        CorruptCodesError,
        match=r"codes/train \(data-00000-of-00001.arrow\): row 13 holds id 2000 in "
        r"codebook 3 \(ids must be in 0..1026\)",
    ):
        td.load_tokenized_dataset(out)


def test_a_damaged_shard_is_tokenized_again_on_resume(
    clips, feature_extractor, finished, tmp_path, monkeypatch, caplog
):  # noqa: E501
    """The shard counted as finished because its folder existed, and was merged: clip 86 got ids -143, -334."""
    out = str(tmp_path / "codes")

    def killed(dataset, split_dir):
        raise KeyboardInterrupt("killed before the merge")

    with monkeypatch.context() as patch:
        patch.setattr(td, "_save_split", killed)
        with pytest.raises(KeyboardInterrupt):
            tokenize(clips, feature_extractor, out)
    shard = os.path.join(out, "_work", "train", "shard-00001-of-00004")
    assert os.path.isdir(shard)
    with pytest.raises(CorruptCodesError, match=r"is an unfinished pre-tokenization \(4 of 4 shards done\); rerun"):
        td.load_tokenized_dataset(out)  # defect 5: was datasets' "neither a Dataset directory nor a DatasetDict"
    flip_a_byte(arrow_file(shard))
    with caplog.at_level("WARNING"):
        resumed = tokenize(clips, feature_extractor, out)
    assert "shard-00001-of-00004" in caplog.text and "a finished shard is damaged" in caplog.text
    expected = td.load_tokenized_dataset(finished)
    assert resumed["train"]["input_ids"] == expected["train"]["input_ids"]


@pytest.mark.parametrize(
    "name", ["dataset_dict.json", "tokenization_info.json", "train/state.json", "train/dataset_info.json"]
)
def test_a_truncated_json_file_is_named(name, finished, tmp_path):
    out = copy(finished, tmp_path)
    path = os.path.join(out, name)
    text = open(path).read()
    open(path, "w").write(text[: len(text) // 2])
    with pytest.raises(CorruptCodesError, match=f"{path} is damaged \\(not valid JSON"):
        td.load_tokenized_dataset(out)


def test_a_damaged_arrow_file_without_checksums_is_named(tmp_path):
    out = write_codes(tmp_path / "codes", num_clips=8)
    path = arrow_file(os.path.join(out, "train"))
    with open(path, "r+b") as f:
        f.truncate(40)
    with pytest.raises(CorruptCodesError, match=f"{path} is damaged"):
        td.load_tokenized_dataset(out)


def test_unfinished_before_any_shard(finished, tmp_path):
    out = str(tmp_path / "codes")
    os.makedirs(out)
    shutil.copy(os.path.join(finished, "tokenization_info.json"), out)
    with pytest.raises(CorruptCodesError, match=r"unfinished pre-tokenization \(0 of \? shards done\)"):
        td.load_tokenized_dataset(out)
