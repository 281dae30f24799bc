"""Building the run's config, model and feature extractor from the flags."""

import logging
import os

from audioformer.modeling_audioformer import AudioFormerConfig
from audioformer.tokenization.audio_arguments import load_feature_extractor

from .arguments import ModelArguments


logger = logging.getLogger(__name__)


def apply_config_overrides(config, overrides: str | None):
    """
    `config.update_from_string(overrides)` ("key=value,key2=value2", values cast to each field's type), with a clear
    error for an unknown key, fields left at None (e.g. `classifier_dropout`) taking a number or the text as written,
    `embedding_size` following `hidden_size` unless both are given, and the result checked for consistency.
    """
    if not overrides:
        return config
    pairs = [tuple(part.strip() for part in item.split("=", 1)) for item in overrides.split(",")]
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"--config_overrides: expected key=value, got {pair[0]!r} (in {overrides!r}).")
    unknown = [key for key, _ in pairs if not hasattr(config, key)]
    if unknown:
        raise ValueError(f"--config_overrides: {type(config).__name__} has no field {unknown[0]!r}.")
    keys = {key for key, _ in pairs}
    embedding_follows = "hidden_size" in keys and "embedding_size" not in keys
    embedding_follows &= config.embedding_size == config.hidden_size
    for key, value in pairs:  # update_from_string casts to the current value's type, which None does not have
        if getattr(config, key) is None:
            setattr(config, key, _number_or_text(value))
    config.update_from_string(",".join(f"{key}={value}" for key, value in pairs))
    if embedding_follows:
        config.embedding_size = config.hidden_size
    config.raise_if_inconsistent()
    return config


def _number_or_text(value: str) -> int | float | str | None:
    if value.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def load_config(model_args: ModelArguments, num_codebooks: int | None = None, **kwargs):
    """
    AudioFormerConfig from --model_name_or_path, else --config_name, else the paper's defaults with
    --config_overrides; then --codebook_index, --input_codebooks (a fused model), the codec's `num_codebooks` (for a
    new model), and `kwargs` (e.g. num_labels, id2label). Raises a ValueError naming the field if the result is
    inconsistent (e.g. a codebook index the codec does not produce).
    """
    common = dict(cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token)
    if model_args.model_name_or_path:
        config = AudioFormerConfig.from_pretrained(model_args.model_name_or_path, **common)
    elif model_args.config_name:
        config = AudioFormerConfig.from_pretrained(model_args.config_name, **common)
    else:
        config = AudioFormerConfig()
        logger.info("Training a new AudioFormer from scratch.")
    apply_config_overrides(config, model_args.config_overrides)
    if num_codebooks is not None:
        config.num_codebooks = num_codebooks
    if model_args.codebook_index is not None:
        config.codebook_index = model_args.codebook_index
    input_codebooks = getattr(model_args, "input_codebooks", None)
    if input_codebooks is not None:
        config.input_codebooks = list(input_codebooks)
        config.codebook_index = int(input_codebooks[0])
        config.normalize_input_codebooks()
    for key, value in kwargs.items():
        setattr(config, key, value)
    config.raise_if_inconsistent()
    return config


def load_model(model_class, model_args: ModelArguments, config, **kwargs):
    """`model_class.from_pretrained(--model_name_or_path)` or a freshly initialised `model_class(config)`."""
    if model_args.attn_implementation is not None:
        config._attn_implementation = model_args.attn_implementation
    if model_args.model_name_or_path:
        return model_class.from_pretrained(
            model_args.model_name_or_path,
            config=config,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            **kwargs,
        )
    return model_class(config)


def load_run_feature_extractor(model_args: ModelArguments, tokenized_info: dict | None = None):
    """
    The run's AudioFormerFeatureExtractor (through `tokenization.audio_arguments.load_feature_extractor`):
    --feature_extractor_name, else the one saved with --model_name_or_path, else the settings a pre-tokenized dataset
    was made with, else a new one on --codec_name_or_path.
    """
    saved = (
        model_args.model_name_or_path
        if model_args.model_name_or_path and _has_preprocessor_config(model_args)
        else None
    )
    settings = None
    if tokenized_info is not None:
        settings = dict(tokenized_info["feature_extractor"], codec_name_or_path=tokenized_info["codec_name_or_path"])
    return load_feature_extractor(model_args, saved=saved, settings=settings)


def _has_preprocessor_config(model_args) -> bool:
    path = model_args.model_name_or_path
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "preprocessor_config.json"))
    try:
        from huggingface_hub import file_exists

        return file_exists(
            path, "preprocessor_config.json", revision=model_args.model_revision, token=model_args.token
        )
    except Exception:  # noqa: BLE001 - offline or private: fall back to building one
        return False
