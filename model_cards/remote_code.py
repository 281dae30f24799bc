"""
The remote code of a published AudioFormer folder: the files and `config.json` entries that let
`trust_remote_code=True` users (and the Hub's Inference Endpoints) load it with only torch and transformers: the
code-id tokenizer, the Endpoints handler, the long-audio pipeline, and a complete `auto_map` / `custom_pipelines`.
"""

import json
import shutil
from pathlib import Path

from audioformer.modeling_audioformer import long_audio
from audioformer.modeling_audioformer.modeling_audioformer import AUTO_MAP
from audioformer.tokenization import AudioFormerTokenizer


HANDLER_FILE = Path(__file__).resolve().parent / "handler.py"
LONG_AUDIO_FILE = Path(long_audio.__file__)
# What an Inference Endpoint installs from the repository's requirements.txt besides its image: the feature extractor
# resamples with python-soxr; the handler decodes WAV, FLAC and OGG with soundfile (without ffmpeg).
ENDPOINT_REQUIREMENTS = "soxr>=0.5,<2\nsoundfile>=0.12\n"


def read_folder_json(path) -> dict:
    """A JSON file of a saved folder (`config.json`, `preprocessor_config.json`), {} when the folder has none."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def save_code_tokenizer(output_dir) -> None:
    """Saves the code-id tokenizer (`AudioFormerTokenizer`, with its remote code) for `AutoTokenizer` and the
    `fill-mask` / `feature-extraction` pipelines."""
    AudioFormerTokenizer().save_pretrained(output_dir)


def complete_auto_map(output_dir) -> dict:
    """
    Adds every AudioFormer Auto class whose code file is in the folder to `config.json` (the models' own
    `save_pretrained` already writes them all; folders saved otherwise may lack some), `AutoFeatureExtractor` and
    `AutoTokenizer` when their code is there, and the project's audio-classification pipeline (`custom_pipelines`)
    when `long_audio.py` is; returns the auto_map.
    """
    path = Path(output_dir) / "config.json"
    config = read_folder_json(path)
    if config.get("model_type") != "audioformer":
        return config.get("auto_map", {})
    auto_map = dict(config.get("auto_map") or {})
    for auto_class, ref in AUTO_MAP.items():
        if (Path(output_dir) / (ref.split(".")[0] + ".py")).is_file():
            auto_map.setdefault(auto_class, ref)
    if (Path(output_dir) / "feature_extraction_audioformer.py").is_file():
        auto_map.setdefault("AutoFeatureExtractor", "feature_extraction_audioformer.AudioFormerFeatureExtractor")
    if (Path(output_dir) / "tokenization_audioformer.py").is_file():
        auto_map.setdefault("AutoTokenizer", ["tokenization_audioformer.AudioFormerTokenizer", None])
    custom_pipelines = dict(config.get("custom_pipelines") or {})
    if (Path(output_dir) / "long_audio.py").is_file():
        custom_pipelines.update(long_audio.CUSTOM_PIPELINES)
    if auto_map != config.get("auto_map") or custom_pipelines != (config.get("custom_pipelines") or {}):
        config["auto_map"] = auto_map
        config["custom_pipelines"] = custom_pipelines
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return auto_map


def write_remote_code(output_dir, classifier: bool) -> None:
    """Everything a published folder needs beside its weights and configs: the code-id tokenizer, for a classifier
    the Endpoints handler (and its `requirements.txt`) and the long-audio pipeline, and a complete `auto_map` /
    `custom_pipelines`."""
    output_dir = Path(output_dir)
    save_code_tokenizer(output_dir)
    if classifier:
        shutil.copyfile(HANDLER_FILE, output_dir / "handler.py")
        shutil.copyfile(LONG_AUDIO_FILE, output_dir / "long_audio.py")
        (output_dir / "requirements.txt").write_text(ENDPOINT_REQUIREMENTS)
    complete_auto_map(output_dir)
