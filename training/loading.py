"""Building the run's config, model and feature extractor from the flags."""

import logging
import os

from .arguments import DEFAULT_CODEC, ModelArguments


logger = logging.getLogger(__name__)


def apply_config_overrides(config, overrides: str | None):
    """
    Applies "key=value,key2=value2" to `config` (values cast to the type of the current value; None fields take
    ints, floats or strings as written) and re-checks it. Unknown keys raise a ValueError naming them.
    """
    if not overrides:
        return config
    updates = {}
    for item in overrides.split(","):
        if "=" not in item:
            raise ValueError(f"--config_overrides: expected key=value, got {item!r} (in {overrides!r}).")
        key, value = (s.strip() for s in item.split("=", 1))
        if not hasattr(config, key):
            raise ValueError(f"--config_overrides: {type(config).__name__} has no field {key!r}.")
        old = getattr(config, key)
        if isinstance(old, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--config_overrides: {key} needs true/false, got {value!r}.")
            new = value.lower() in ("true", "1")
        elif value.lower() == "none":
            new = None
        elif isinstance(old, int) or old is None and value.lstrip("-").isdigit():
            new = int(value)
        elif isinstance(old, float) or old is None:
            try:
                new = float(value)
            except ValueError:
                new = value
        else:
            new = value
        updates[key] = new
    # embedding_size defaults to hidden_size; keep them together unless both are given.
    if "hidden_size" in updates and "embedding_size" not in updates and config.embedding_size == config.hidden_size:
        updates["embedding_size"] = updates["hidden_size"]
    for key, value in updates.items():
        setattr(config, key, value)
    config.check_values()
    return config


def load_config(model_args: ModelArguments, num_codebooks: int | None = None, **kwargs):
    """
    AudioFormerConfig from --model_name_or_path, else --config_name, else the paper's defaults with
    --config_overrides; then --codebook_index, the codec's `num_codebooks` (for a new model), and `kwargs`
    (e.g. num_labels, id2label). Raises a ValueError if the codebook index is not one the codec produces.
    """
    from modeling_audioformer import AudioFormerConfig

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
    for key, value in kwargs.items():
        setattr(config, key, value)
    if num_codebooks is not None and not 0 <= config.codebook_index < num_codebooks:
        raise ValueError(
            f"codebook_index {config.codebook_index} is not produced by the codec: it gives {num_codebooks} "
            f"codebooks (indices 0..{num_codebooks - 1})."
        )
    config.check_values()
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


def load_feature_extractor(model_args: ModelArguments, tokenized_info: dict | None = None):
    """
    The AudioFormerFeatureExtractor of the run: --feature_extractor_name, else the one saved in
    --model_name_or_path, else the settings a pre-tokenized dataset was made with, else a new one on
    --codec_name_or_path. --codec_name_or_path, --bandwidth and --max_duration override what was loaded.
    """
    from tokenization.feature_extraction_audioformer import AudioFormerFeatureExtractor

    overrides = {
        k: v
        for k, v in (
            ("codec_name_or_path", model_args.codec_name_or_path),
            ("bandwidth", model_args.bandwidth),
            ("max_duration", model_args.max_duration),
        )
        if v is not None
    }
    source = model_args.feature_extractor_name
    if source is None and model_args.model_name_or_path and _has_preprocessor_config(model_args):
        source = model_args.model_name_or_path
    if source is not None:
        return AudioFormerFeatureExtractor.from_pretrained(
            source, cache_dir=model_args.cache_dir, token=model_args.token, **overrides
        )
    if tokenized_info is not None:
        settings = dict(tokenized_info["feature_extractor"], codec_name_or_path=tokenized_info["codec_name_or_path"])
        settings.pop("feature_extractor_type", None)
        settings.update(overrides)
        return AudioFormerFeatureExtractor(**settings)
    overrides.setdefault("codec_name_or_path", DEFAULT_CODEC)
    return AudioFormerFeatureExtractor(**overrides)


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
