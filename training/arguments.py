"""
The flags of `run_mlm.py` and `run_classification.py`: which model, codec and data, parsed with `HfArgumentParser`
from the command line or from one .json / .yaml file.

    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    model_args, data_args, training_args = parse_args(parser)
"""

import os
import sys
from dataclasses import dataclass, field


DEFAULT_CODEC = "facebook/encodec_24khz"


@dataclass
class ModelArguments:
    """Which model, config, codebook and codec to use."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Checkpoint to start from (a folder or Hub name). Leave unset to train from scratch."},
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config (folder, Hub name or config.json) when training from scratch."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config changes when training from scratch, e.g. 'hidden_size=64,num_hidden_layers=2'."},
    )
    codebook_index: int | None = field(
        default=None,
        metadata={"help": "Codebook row to train on (0 = C1). Default: the config's (0 for a new model)."},
    )
    feature_extractor_name: str | None = field(
        default=None,
        metadata={
            "help": "A saved AudioFormerFeatureExtractor (folder or Hub name). Default: the one in "
            "--model_name_or_path, else one built from --codec_name_or_path."
        },
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
    train_file: str | None = field(
        default=None, metadata={"help": "CSV / JSON-lines file with a column of audio paths."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Same, for evaluation."})
    tokenized_dataset: str | None = field(
        default=None,
        metadata={"help": "Output folder of `python -m tokenization.tokenize_dataset` (skips tokenizing)."},
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
        metadata={
            "help": "Where raw audio is tokenized to (reused by later runs with the same data and codec). "
            "Default: <cache_dir or HF_DATASETS_CACHE>/audioformer-tokenized/<fingerprint>."
        },
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Tokenize again even if a cache exists."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad batch lengths to a multiple of this."})

    def __post_init__(self):
        sources = [
            self.dataset_name is not None or self.data_dir is not None,
            self.train_file is not None or self.validation_file is not None,
            self.tokenized_dataset is not None,
        ]
        if sum(sources) == 0:
            raise ValueError(
                "No data: pass --dataset_name / --data_dir, --train_file / --validation_file, or --tokenized_dataset."
            )
        if sum(sources) > 1:
            raise ValueError(
                "Pass only one data source: --dataset_name / --data_dir, --train_file / "
                "--validation_file, or --tokenized_dataset."
            )
        if not 0 <= self.validation_split_percentage < 100:
            raise ValueError(
                f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}."
            )
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}.")


def parse_args(parser, argv=None):
    """Flags, or a single .json / .yaml / .yml file as the only argument (as in transformers' examples)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(yaml_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)
