"""
The flags of `run_mlm.py` and `run_classification.py`: which model, codec and data, parsed with `HfArgumentParser`
from the command line or from one .json / .yaml file. The codec and audio flags are the pre-tokenizer's
(`tokenization/audio_arguments.py`), extended here.

    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    model_args, data_args, training_args = parse_args(parser)
"""

import os
import sys
from dataclasses import dataclass, field

from audioformer.tokenization.audio_arguments import AudioDataArguments, CodecArguments


@dataclass
class ModelArguments(CodecArguments):
    """Which model, config and codebook to use (and the codec flags of `CodecArguments`)."""

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
    input_codebooks: list[int] | None = field(
        default=None,
        metadata={
            "help": "Codebook rows a fused model reads at once, e.g. '0 1 2 3' (a frame's embedding is the sum of "
            "one per codebook; MLM masks whole frames and predicts every codebook). Default: the config's (the "
            "paper's single row, --codebook_index)."
        },
    )
    model_revision: str = field(default="main", metadata={"help": "Model branch, tag or commit."})
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "'sdpa_per_clip' (default without an accelerator), 'sdpa' (default with one) or 'eager'."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.config_overrides is not None and self.model_name_or_path is not None:
            raise ValueError("--config_overrides can't be combined with --model_name_or_path (it is for new models).")
        if self.input_codebooks is not None:
            if not self.input_codebooks:
                raise ValueError("--input_codebooks needs at least one codebook row, e.g. --input_codebooks 0 1 2 3.")
            if len(set(self.input_codebooks)) != len(self.input_codebooks):
                raise ValueError(f"--input_codebooks {self.input_codebooks} names a codebook more than once.")
            if self.codebook_index is not None and self.codebook_index != self.input_codebooks[0]:
                raise ValueError(
                    f"--codebook_index {self.codebook_index} and --input_codebooks {self.input_codebooks} disagree: a "
                    "fused model's codebook_index is its first input codebook; pass only --input_codebooks."
                )


@dataclass
class DataTrainingArguments(AudioDataArguments):
    """Where the audio (or the pre-tokenized codes) come from, which splits, and how much of them to use."""

    tokenized_dataset: str | None = field(
        default=None,
        metadata={
            "help": "Output folder of `python -m audioformer.tokenization.tokenize_dataset` (skips tokenizing)."
        },
    )
    train_split_name: str = field(default="train", metadata={"help": "Training split of the source."})
    eval_split_name: str = field(default="validation", metadata={"help": "Evaluation split of the source."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only this many training clips (taken before tokenizing)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many evaluation clips."})
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Percent of train held out for evaluation when the source has no eval split."}
    )
    tokenized_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where raw audio is tokenized to (reused by later runs with the same data and codec). "
            "Default: <cache_dir or HF_DATASETS_CACHE>/audioformer-tokenized/<fingerprint>."
        },
    )
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad batch lengths to a multiple of this."})

    def data_sources(self) -> list[bool]:
        return super().data_sources() + [self.tokenized_dataset is not None]

    def __post_init__(self):
        super().__post_init__()
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
