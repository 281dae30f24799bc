"""Tests of modeling_audioformer/pickle_detection.py: pickles found by their bytes, whatever their name; and the
checkpoint converter naming a pickle disguised as .safetensors."""

import bz2
import gzip
import json
import lzma
import pickle
import tarfile
import zlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from audioformer.modeling_audioformer.pickle_detection import describe_pickle


OBJECT = {"weights": [1.0, 2.0], "name": "x"}


def write_files(folder):
    """name -> expected description (None: not a pickle)."""
    expected = {}
    for protocol in range(6):
        (folder / f"p{protocol}.txt").write_bytes(pickle.dumps(OBJECT, protocol=protocol))
        expected[f"p{protocol}.txt"] = "protocol 0 or 1" if protocol < 2 else f"a pickle (protocol {protocol})"
    (folder / "model.pth.tar").write_bytes(pickle.dumps(OBJECT, protocol=4))
    expected["model.pth.tar"] = "a pickle (protocol 4)"
    (folder / "data.pkl.gz").write_bytes(gzip.compress(pickle.dumps(OBJECT)))
    expected["data.pkl.gz"] = "a gzip-compressed pickle"
    (folder / "a.bz2").write_bytes(bz2.compress(pickle.dumps(OBJECT)))
    expected["a.bz2"] = "a bz2-compressed pickle"
    (folder / "a.xz").write_bytes(lzma.compress(pickle.dumps(OBJECT)))
    expected["a.xz"] = "an xz-compressed pickle"
    (folder / "weights.joblib").write_bytes(zlib.compress(pickle.dumps(OBJECT)))  # joblib's zlib files
    expected["weights.joblib"] = "a zlib-compressed pickle"
    torch.save({"w": torch.zeros(2)}, folder / "weights.npy")
    expected["weights.npy"] = "a torch.save archive (its weights/data.pkl is a pickle)"
    np.save(folder / "arr.npy", np.array([OBJECT], dtype=object), allow_pickle=True)
    expected["arr.npy"] = "a numpy array of Python objects"
    np.savez(folder / "arrays.npz", a=np.array([OBJECT], dtype=object))
    expected["arrays.npz"] = "a zip archive holding a numpy array of Python objects"
    with tarfile.open(folder / "bundle.tar", "w") as tar:
        tar.add(folder / "p4.txt", arcname="p4.txt")
    expected["bundle.tar"] = "a tar archive holding a pickle (protocol 4) (p4.txt)"
    # Not pickles: what an output folder holds, plain numpy, and a safetensors file whose 8-byte header length
    # begins with the pickle marker bytes 0x80 0x02.
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    np.save(folder / "plain.npy", np.zeros(3))
    np.savez(folder / "plain.npz", a=np.zeros(3))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    header += b" " * (0x0280 - len(header))
    (folder / "tricky.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    (folder / "config.json").write_text(json.dumps({"model_type": "audioformer"}))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A model (see it.)\n")
    (folder / "handler.py").write_text('"""Handler."""\nimport torch\n')
    (folder / "example.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    for name in ("model.safetensors", "plain.npy", "plain.npz", "tricky.safetensors", "config.json", "README.md"):
        expected[name] = None
    expected["handler.py"] = expected["example.wav"] = None
    return expected


def test_describe_pickle(tmp_path):
    from safetensors.torch import load_file

    expected = write_files(tmp_path)
    assert (tmp_path / "tricky.safetensors").read_bytes()[:2] == b"\x80\x02"
    assert load_file(str(tmp_path / "tricky.safetensors"))["w"].shape == (1,)
    for name, description in expected.items():
        found = describe_pickle(tmp_path / name)
        if description is None:
            assert found is None, (name, found)
        else:
            assert found is not None and description in found, (name, found)


def test_converter_names_a_pickle_disguised_as_safetensors(tmp_path):
    """Defect: a pickle named .safetensors gave a raw `SafetensorError: header too large`."""
    from audioformer.modeling_audioformer.convert_checkpoint import load_source

    torch.save({"embeddings.word_embeddings.weight": torch.zeros(4, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"named .safetensors but its content is a torch.save archive .*not loaded"):
        load_source(tmp_path / "model.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"w":')
    with pytest.raises(ValueError, match="cut.safetensors is not a valid safetensors file"):
        load_source(tmp_path / "cut.safetensors")
