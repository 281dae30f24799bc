"""The publisher refuses any file whose content is a pickle, whatever its name (model_cards/publish.py)."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from audioformer.model_cards.publish import files_to_upload


@pytest.mark.parametrize("name", ["model.pth.tar", "weights.joblib", "arr.npy", "data.pkl.gz", "sub/notes.txt"])
def test_a_pickle_under_any_name_is_refused(tmp_path, name):
    """Defect: pickles named model.pth.tar, weights.joblib, arr.npy or data.pkl.gz were listed for upload."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "audioformer"}))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    assert files_to_upload(tmp_path) == ["config.json", "model.safetensors"]
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    data = pickle.dumps({"a": 1}, protocol=4)
    if name.endswith(".gz"):
        import gzip

        data = gzip.compress(data)
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"content is a pickle: {name} is a .*pickle"):
        files_to_upload(tmp_path)
