"""
What `run_mlm.py` and `run_classification.py` share: the model / data flags, building the config and model, and
turning the data flags into datasets of code ids (raw audio is pre-tokenized once and cached).

    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    model_args, data_args, training_args = parse_args(parser)              # flags, or one .json / .yaml file
    datasets, feature_extractor = prepare_code_datasets(model_args, data_args, training_args)
    config = load_config(model_args, num_codebooks=num_codebooks_of(datasets))
    model = load_model(AudioFormerForMaskedLM, model_args, config)

`prepare_code_datasets` returns a `DatasetDict` with the splits "train" and/or "validation" (the split names of the
source are `--train_split_name` / `--eval_split_name`); each row has `input_ids` (int16 `(K, frames + 2)`), `length`
and every non-audio column of the source (labels, ids, ...).
"""

import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field

import datasets


logger = logging.getLogger(__name__)

DEFAULT_CODEC = "facebook/encodec_24khz"


@dataclass
class ModelArguments:
    """Which model, config, codebook and codec to use."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint to start from (a folder or Hub name). Leave unset to train from scratch."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config (folder, Hub name or config.json) when training from scratch."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config changes when training from scratch, e.g. 'hidden_size=64,num_hidden_layers=2'."},
    )
    codebook_index: int | None = field(
        default=None, metadata={"help": "Codebook row to train on (0 = C1). Default: the config's (0 for a new model)."}
    )
    feature_extractor_name: str | None = field(
        default=None,
        metadata={"help": "A saved AudioFormerFeatureExtractor (folder or Hub name). Default: the one in "
                          "--model_name_or_path, else one built from --codec_name_or_path."},
    )
    codec_name_or_path: str | None = field(
        default=None, metadata={"help": f"EnCodec model (transformers format). Default: {DEFAULT_CODEC}."}
    )
    bandwidth: float | None = field(default=None, metadata={"help": "EnCodec bandwidth in kbps (3.0 = 4 codebooks)."})
    max_duration: float | None = field(
        default=None, metadata={"help": "Clips are cut to this many seconds (default 10, as in the paper)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are cached."})
    model_revision: str = field(default="main", metadata={"help": "Model branch, tag or commit."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the one of `hf auth login`)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow dataset / model code from the Hub."})
    attn_implementation: str | None = field(default=None, metadata={"help": "'sdpa' (default) or 'eager'."})

    def __post_init__(self):
        if self.config_overrides is not None and self.model_name_or_path is not None:
            raise ValueError("--config_overrides can't be combined with --model_name_or_path (it is for new models).")
        if self.codebook_index is not None and self.codebook_index < 0:
            raise ValueError(f"--codebook_index must be >= 0, got {self.codebook_index}.")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError(f"--max_duration must be positive, got {self.max_duration}.")


@dataclass
class DataTrainingArguments:
    """Where the audio (or the pre-tokenized codes) come from, and how much of it to use."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset name, or a builder such as 'audiofolder' (with --data_dir)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    data_dir: str | None = field(default=None, metadata={"help": "Local audiofolder (split or class sub-folders)."})
    train_file: str | None = field(default=None, metadata={"help": "CSV / JSON-lines file with a column of audio paths."})
    validation_file: str | None = field(default=None, metadata={"help": "Same, for evaluation."})
    tokenized_dataset: str | None = field(
        default=None, metadata={"help": "Output folder of `python -m tokenization.tokenize_dataset` (skips tokenizing)."}
    )
    train_split_name: str = field(default="train", metadata={"help": "Training split of the source."})
    eval_split_name: str = field(default="validation", metadata={"help": "Evaluation split of the source."})
    audio_column_name: str = field(default="audio", metadata={"help": "Column holding the audio."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only this many training clips (taken before tokenizing)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many evaluation clips."})
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Percent of train held out for evaluation when the source has no eval split."}
    )
    preprocessing_batch_size: int = field(default=8, metadata={"help": "Clips per codec call while tokenizing."})
    tokenized_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where raw audio is tokenized to (reused by later runs with the same data and codec). "
                          "Default: <cache_dir or HF_DATASETS_CACHE>/audioformer-tokenized/<fingerprint>."},
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Tokenize again even if a cache exists."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad batch lengths to a multiple of this."})

    def __post_init__(self):
        sources = [self.dataset_name is not None or self.data_dir is not None,
                   self.train_file is not None or self.validation_file is not None,
                   self.tokenized_dataset is not None]
        if sum(sources) == 0:
            raise ValueError("No data: pass --dataset_name / --data_dir, --train_file / --validation_file, "
                             "or --tokenized_dataset.")
        if sum(sources) > 1:
            raise ValueError("Pass only one data source: --dataset_name / --data_dir, --train_file / "
                             "--validation_file, or --tokenized_dataset.")
        if not 0 <= self.validation_split_percentage < 100:
            raise ValueError(f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}.")


def setup_logging(training_args, script_logger: logging.Logger):
    """The scripts' logging: timestamped lines on stdout, at the process's log level (quieter on non-main ranks)
    for `script_logger`, `datasets` and `transformers`."""
    import transformers

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    log_level = training_args.get_process_log_level()
    script_logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


def parse_args(parser, argv=None):
    """Flags, or a single .json / .yaml / .yml file as the only argument (as in transformers' examples)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(yaml_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


# ---------------------------------------------------------------------------------------------- config and model


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
            model_args.model_name_or_path, config=config, cache_dir=model_args.cache_dir,
            revision=model_args.model_revision, token=model_args.token, **kwargs,
        )
    return model_class(config)


def max_code_length(model_args: ModelArguments, feature_extractor) -> int | None:
    """Ids per row of a --max_duration clip (`<BOA>` + frames + `<EOA>`), for the collators to cut codes tokenized
    with a longer duration; None without --max_duration."""
    if model_args.max_duration is None:
        return None
    return math.ceil(model_args.max_duration * feature_extractor.sampling_rate / feature_extractor.hop_length) + 2


def max_positions_check(dataset_dict, config, max_length: int | None = None):
    """Raises a ValueError if a row, once cut to `max_length` ids, is longer than `max_position_embeddings`."""
    for split, ds in dataset_dict.items():
        longest = max(ds["length"]) if "length" in ds.column_names else max(len(r[0]) for r in ds["input_ids"])
        if max_length is not None:
            longest = min(longest, max_length)
        if longest > config.max_position_embeddings:
            raise ValueError(
                f"Split '{split}' has sequences of {longest} ids but the model takes at most "
                f"{config.max_position_embeddings} (max_position_embeddings); lower --max_duration."
            )


# ---------------------------------------------------------------------------------------------- feature extractor


def load_feature_extractor(model_args: ModelArguments, tokenized_info: dict | None = None):
    """
    The AudioFormerFeatureExtractor of the run: --feature_extractor_name, else the one saved in
    --model_name_or_path, else the settings a pre-tokenized dataset was made with, else a new one on
    --codec_name_or_path. --codec_name_or_path, --bandwidth and --max_duration override what was loaded.
    """
    from tokenization.feature_extraction_audioformer import AudioFormerFeatureExtractor

    overrides = {k: v for k, v in (("codec_name_or_path", model_args.codec_name_or_path),
                                   ("bandwidth", model_args.bandwidth),
                                   ("max_duration", model_args.max_duration)) if v is not None}
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

        return file_exists(path, "preprocessor_config.json", revision=model_args.model_revision, token=model_args.token)
    except Exception:  # noqa: BLE001 - offline or private: fall back to building one
        return False


# ---------------------------------------------------------------------------------------------- datasets


def num_codebooks_of(dataset_dict) -> int:
    """K of the `(K, L)` rows of the first non-empty split."""
    for ds in dataset_dict.values():
        if len(ds):
            return len(ds[0]["input_ids"])
    raise ValueError("All splits are empty.")


def _select_splits(source, data_args, training_args, need_train: bool, need_eval: bool):
    """Source DatasetDict -> DatasetDict with "train" / "validation", carved and truncated as the flags say."""
    out = datasets.DatasetDict()
    names = list(source.keys())
    if need_train:
        if data_args.train_split_name not in source:
            raise ValueError(f"No training split '{data_args.train_split_name}' in the data (splits: {names}); "
                             "set --train_split_name.")
        out["train"] = source[data_args.train_split_name]
    if need_eval:
        if data_args.eval_split_name in source:
            out["validation"] = source[data_args.eval_split_name]
        elif data_args.train_split_name in source and data_args.validation_split_percentage > 0:
            full = source[data_args.train_split_name]
            if len(full) < 2:
                raise ValueError(f"Split '{data_args.train_split_name}' has {len(full)} rows: too few to hold out "
                                 "a validation part.")
            parts = full.train_test_split(test_size=data_args.validation_split_percentage / 100,
                                          seed=training_args.seed, shuffle=True)
            if need_train:
                out["train"] = parts["train"]
            out["validation"] = parts["test"]
            logger.info("No '%s' split: held out %d%% of '%s' for evaluation.", data_args.eval_split_name,
                        data_args.validation_split_percentage, data_args.train_split_name)
        else:
            raise ValueError(f"No evaluation split '{data_args.eval_split_name}' in the data (splits: {names}); "
                             "set --eval_split_name or --validation_split_percentage > 0.")
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if split in out and limit is not None:
            out[split] = out[split].select(range(min(limit, len(out[split]))))
    for split, ds in out.items():
        if len(ds) == 0:
            raise ValueError(f"The {split} split ('{_source_name(split, data_args)}') is empty.")
    return out


def _source_name(split, data_args):
    return data_args.train_split_name if split == "train" else data_args.eval_split_name


def _check_tokenized(dataset_dict, path):
    for split, ds in dataset_dict.items():
        if "input_ids" not in ds.column_names:
            raise ValueError(
                f"{path} (split '{split}') has no 'input_ids' column (columns: {ds.column_names}): it is not the output "
                "of `python -m tokenization.tokenize_dataset`. Pass raw audio with --dataset_name / --data_dir / "
                "--train_file instead."
            )


def _split_key(ds, audio_column_name) -> list:
    """What identifies a split's rows: the datasets fingerprint for cached (on-disk) data, which is deterministic;
    for in-memory data (audiofolders, whose fingerprints are random) the audio paths themselves."""
    if ds.cache_files:
        return [len(ds), ds._fingerprint]
    from tokenization.audio_io import audio_name

    names = hashlib.sha256("\n".join(audio_name(v) for v in ds[audio_column_name]).encode()).hexdigest()
    return [len(ds), names]


def _fingerprint(data_args, feature_extractor, splits) -> str:
    def absolute(path):
        return os.path.abspath(path) if path is not None and os.path.exists(path) else path

    key = {
        "dataset_name": data_args.dataset_name,
        "dataset_config_name": data_args.dataset_config_name,
        "data_dir": absolute(data_args.data_dir),
        "train_file": absolute(data_args.train_file),
        "validation_file": absolute(data_args.validation_file),
        "audio_column_name": data_args.audio_column_name,
        "splits": {s: _split_key(ds, data_args.audio_column_name) for s, ds in splits.items()},
        "feature_extractor": {k: v for k, v in feature_extractor.to_dict().items() if k != "device"},
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_code_datasets(model_args: ModelArguments, data_args: DataTrainingArguments, training_args,
                          need_train: bool | None = None, need_eval: bool | None = None, check_splits=None):
    """
    Loads the data named by the flags and returns it as code ids, checking it before any training.

    Raw audio is tokenized once by `tokenization.tokenize_dataset.pretokenize` (every process encodes its own
    shards under `accelerate launch`) into --tokenized_cache_dir, which later runs reuse.

    Args:
        need_train / need_eval: which splits to return; default `training_args.do_train` / `do_eval`.
        check_splits: called with the selected source splits (a DatasetDict with "train" and/or "validation",
            audio undecoded) before anything is tokenized, to stop early on bad input (e.g. the labels); its
            row numbers are the source's, which tokenizing can shift by skipping unreadable clips.
    Returns:
        (DatasetDict with "train" and/or "validation", AudioFormerFeatureExtractor)
    Raises:
        ValueError: no audio column, not a tokenized dataset, a missing or empty split, or a --codebook_index the
        codec does not produce.
    """
    from tokenization.tokenize_dataset import _read_json, load_audio_dataset, load_tokenized_dataset, pretokenize

    need_train = training_args.do_train if need_train is None else need_train
    need_eval = training_args.do_eval if need_eval is None else need_eval
    if not need_train and not need_eval:
        raise ValueError("Nothing to do: pass --do_train and/or --do_eval.")

    if data_args.tokenized_dataset is not None:
        path = data_args.tokenized_dataset
        if not os.path.isdir(path):
            raise ValueError(f"--tokenized_dataset {path} is not a folder.")
        with training_args.main_process_first(desc="loading the tokenized dataset"):
            source = load_tokenized_dataset(path)
        if isinstance(source, datasets.Dataset):
            source = datasets.DatasetDict({data_args.train_split_name: source})
        _check_tokenized(source, path)
        info = _read_json(os.path.join(path, "tokenization_info.json"), default=None)
        feature_extractor = load_feature_extractor(model_args, tokenized_info=info)
        code_datasets = _select_splits(source, data_args, training_args, need_train, need_eval)
        _check_codebook_index(model_args, num_codebooks_of(code_datasets), f"--tokenized_dataset {path}")
        if check_splits is not None:
            check_splits(code_datasets)
        return code_datasets, feature_extractor

    feature_extractor = load_feature_extractor(model_args)
    # Raises before anything is tokenized (and loads the codec, which tokenizing needs anyway).
    _check_codebook_index(model_args, feature_extractor.num_codebooks,
                          f"the codec {feature_extractor.codec_name_or_path} at {feature_extractor.bandwidth} kbps")
    with training_args.main_process_first(desc="loading the audio dataset"):
        source = load_audio_dataset(
            data_args.dataset_name, data_args.dataset_config_name, data_args.data_dir, data_args.train_file,
            data_args.validation_file, data_args.audio_column_name, model_args.cache_dir, token=model_args.token,
            trust_remote_code=model_args.trust_remote_code,
        )
    raw = _select_splits(source, data_args, training_args, need_train, need_eval)
    if check_splits is not None:
        check_splits(raw)

    cache = data_args.tokenized_cache_dir or os.path.join(
        model_args.cache_dir or datasets.config.HF_DATASETS_CACHE, "audioformer-tokenized",
        _fingerprint(data_args, feature_extractor, raw),
    )
    # Every process must write to the same folder: rank 0's choice wins.
    from accelerate.utils import broadcast_object_list

    if training_args.world_size > 1:
        cache = broadcast_object_list([cache])[0]
    logger.info("Tokenized codes are cached in %s", cache)
    device = training_args.device
    feature_extractor.to(device)
    code_datasets = pretokenize(
        raw, feature_extractor, cache, audio_column_name=data_args.audio_column_name,
        batch_size=data_args.preprocessing_batch_size, keep_columns=True, resume=not data_args.overwrite_cache,
        show_progress=training_args.process_index == 0 and not training_args.disable_tqdm,
    )
    feature_extractor.to("cpu")
    for split, ds in code_datasets.items():
        if len(ds) == 0:
            raise ValueError(f"No clip of the {split} split ('{_source_name(split, data_args)}') could be "
                             f"tokenized; see {os.path.join(cache, 'failures.json')}.")
    return code_datasets, feature_extractor


def _check_codebook_index(model_args, num_codebooks: int, what: str):
    index = model_args.codebook_index
    if index is not None and not 0 <= index < num_codebooks:
        raise ValueError(
            f"--codebook_index {index} is not produced by {what}: it gives {num_codebooks} codebooks "
            f"(indices 0..{num_codebooks - 1})."
        )


def resolve_checkpoint(training_args) -> str | None:
    """--resume_from_checkpoint PATH, or "true" / "last" for the newest checkpoint in --output_dir."""
    value = training_args.resume_from_checkpoint
    if value is None or not training_args.do_train:
        return None
    if value.lower() in ("true", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise ValueError(f"--resume_from_checkpoint {value}: no checkpoint-* folder in {training_args.output_dir}.")
        return last
    if not os.path.isdir(value):
        raise ValueError(f"--resume_from_checkpoint {value} is not a folder.")
    return value


def training_args_summary(training_args, keys=("learning_rate", "num_train_epochs", "per_device_train_batch_size",
                                                "gradient_accumulation_steps", "seed", "bf16")) -> dict:
    """A few hyper-parameters for the model card, plus the world size."""
    summary = {k: getattr(training_args, k) for k in keys if hasattr(training_args, k)}
    summary["world_size"] = training_args.world_size
    return summary


__all__ = [
    "ModelArguments",
    "DataTrainingArguments",
    "parse_args",
    "setup_logging",
    "apply_config_overrides",
    "load_config",
    "load_model",
    "load_feature_extractor",
    "prepare_code_datasets",
    "num_codebooks_of",
    "max_code_length",
    "max_positions_check",
    "resolve_checkpoint",
    "training_args_summary",
]
