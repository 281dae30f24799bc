"""
The data flags -> datasets of code ids, checked before any training. Raw audio is pre-tokenized once and cached.

    datasets, feature_extractor = prepare_code_datasets(model_args, data_args, training_args)

`prepare_code_datasets` returns a `DatasetDict` with the splits "train" and/or "validation" (the split names of the
source are `--train_split_name` / `--eval_split_name`); each row has `input_ids` (int16 `(K, frames + 2)`), `length`
and every non-audio column of the source (labels, ids, ...).
"""

import hashlib
import json
import logging
import math
import os

import datasets

from audioformer.tokenization.audio_arguments import load_audio_splits
from audioformer.tokenization.audio_io import audio_name
from audioformer.tokenization.tokenize_dataset import load_tokenized_dataset, pretokenize, read_tokenization_info

from .arguments import DataTrainingArguments, ModelArguments
from .loading import load_run_feature_extractor


logger = logging.getLogger(__name__)


def max_code_length(model_args: ModelArguments, feature_extractor) -> int | None:
    """Ids per row of a --max_duration clip (`<BOA>` + frames + `<EOA>`), for the collators to cut codes tokenized
    with a longer duration; None without --max_duration."""
    if model_args.max_duration is None:
        return None
    return math.ceil(model_args.max_duration * feature_extractor.sampling_rate / feature_extractor.hop_length) + 2


def check_max_positions(dataset_dict, config, max_length: int | None = None):
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
            raise ValueError(
                f"No training split '{data_args.train_split_name}' in the data (splits: {names}); "
                "set --train_split_name."
            )
        out["train"] = source[data_args.train_split_name]
    if need_eval:
        if data_args.eval_split_name in source:
            out["validation"] = source[data_args.eval_split_name]
        elif data_args.train_split_name in source and data_args.validation_split_percentage > 0:
            full = source[data_args.train_split_name]
            if len(full) < 2:
                raise ValueError(
                    f"Split '{data_args.train_split_name}' has {len(full)} rows: too few to hold out "
                    "a validation part."
                )
            parts = full.train_test_split(
                test_size=data_args.validation_split_percentage / 100, seed=training_args.seed, shuffle=True
            )
            if need_train:
                out["train"] = parts["train"]
            out["validation"] = parts["test"]
            logger.info(
                "No '%s' split: held out %d%% of '%s' for evaluation.",
                data_args.eval_split_name,
                data_args.validation_split_percentage,
                data_args.train_split_name,
            )
        else:
            raise ValueError(
                f"No evaluation split '{data_args.eval_split_name}' in the data (splits: {names}); "
                "set --eval_split_name or --validation_split_percentage > 0."
            )
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
                f"{path} (split '{split}') has no 'input_ids' column (columns: {ds.column_names}): it is not the "
                "output of `python -m audioformer.tokenization.tokenize_dataset`. Pass raw audio with "
                "--dataset_name / "
                "--data_dir / --train_file instead."
            )


def _split_key(ds, audio_column_name) -> list:
    """What identifies a split's rows: the datasets fingerprint for cached (on-disk) data, which is deterministic;
    for in-memory data (audiofolders, whose fingerprints are random) the audio paths themselves."""
    if ds.cache_files:
        return [len(ds), ds._fingerprint]

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


def prepare_code_datasets(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args,
    need_train: bool | None = None,
    need_eval: bool | None = None,
    check_splits=None,
):
    """
    Loads the data named by the flags and returns it as code ids, checking it before any training.

    Raw audio is tokenized once by `tokenization.tokenize_dataset.pretokenize` (every process encodes its own
    shards under `accelerate launch`) into --tokenized_cache_dir, which later runs reuse while the input files
    (paths, sizes, modification times) and the codec (settings and weights) are the same. Otherwise the default
    cache (named by a fingerprint of the data source, the file paths and the codec settings) is tokenized again
    where it changed, and a --tokenized_cache_dir raises a ValueError saying what differs (--overwrite_cache
    starts it over).

    Args:
        need_train / need_eval: which splits to return; default `training_args.do_train` / `do_eval`.
        check_splits: called with the selected source splits (a DatasetDict with "train" and/or "validation",
            audio undecoded) before anything is tokenized, to stop early on bad input (e.g. the labels); its
            row numbers are the source's, which tokenizing can shift by skipping unreadable clips.
    Returns:
        (DatasetDict with "train" and/or "validation", AudioFormerFeatureExtractor)
    Raises:
        ValueError: no audio column, not a tokenized dataset, a missing or empty split, or a --codebook_index (or
        --input_codebooks row) the codec does not produce.
    """
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
        info = read_tokenization_info(path)
        feature_extractor = load_run_feature_extractor(model_args, tokenized_info=info)
        code_datasets = _select_splits(source, data_args, training_args, need_train, need_eval)
        _check_codebook_index(model_args, num_codebooks_of(code_datasets), f"--tokenized_dataset {path}")
        if check_splits is not None:
            check_splits(code_datasets)
        return code_datasets, feature_extractor

    feature_extractor = load_run_feature_extractor(model_args)
    # Raises before anything is tokenized (and loads the codec, which tokenizing needs anyway).
    _check_codebook_index(
        model_args,
        feature_extractor.num_codebooks,
        f"the codec {feature_extractor.codec_name_or_path} at {feature_extractor.bandwidth} kbps",
    )
    with training_args.main_process_first(desc="loading the audio dataset"):
        source = load_audio_splits(data_args, model_args)
    raw = _select_splits(source, data_args, training_args, need_train, need_eval)
    if check_splits is not None:
        check_splits(raw)

    cache = data_args.tokenized_cache_dir or os.path.join(
        model_args.cache_dir or datasets.config.HF_DATASETS_CACHE,
        "audioformer-tokenized",
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
        raw,
        feature_extractor,
        cache,
        audio_column_name=data_args.audio_column_name,
        batch_size=data_args.preprocessing_batch_size,
        keep_columns=True,
        resume=not data_args.overwrite_cache,
        show_progress=training_args.process_index == 0 and not training_args.disable_tqdm,
        # The default cache is ours to refresh when files changed; a folder the user named is never rewritten unasked.
        if_inputs_changed="raise" if data_args.tokenized_cache_dir else "retokenize",
    )
    feature_extractor.to("cpu")
    for split, ds in code_datasets.items():
        if len(ds) == 0:
            raise ValueError(
                f"No clip of the {split} split ('{_source_name(split, data_args)}') could be "
                f"tokenized; see {os.path.join(cache, 'failures.json')}."
            )
    return code_datasets, feature_extractor


def _check_codebook_index(model_args, num_codebooks: int, what: str):
    index = model_args.codebook_index
    if index is not None and not 0 <= index < num_codebooks:
        raise ValueError(
            f"--codebook_index {index} is not produced by {what}: it gives {num_codebooks} codebooks "
            f"(indices 0..{num_codebooks - 1})."
        )
    for index in getattr(model_args, "input_codebooks", None) or ():
        if not 0 <= index < num_codebooks:
            raise ValueError(
                f"--input_codebooks {index} is not produced by {what}: it gives {num_codebooks} codebooks "
                f"(indices 0..{num_codebooks - 1})."
            )
