"""
The codec and audio-data flags, shared by the pre-tokenizer
(`python -m audioformer.tokenization.tokenize_dataset`) and the
training scripts (which extend them in `training/arguments.py`), so that a flag means the same thing everywhere.

    parser = HfArgumentParser((CodecArguments, AudioDataArguments))
    codec_args, data_args = parser.parse_args_into_dataclasses()
    feature_extractor = load_feature_extractor(codec_args)
"""

from dataclasses import dataclass, field

import datasets

from audioformer.modeling_audioformer.configuration_audioformer import DEFAULT_CODEC

from .audio_io import load_audio_dataset
from .feature_extraction_audioformer import AudioFormerFeatureExtractor


@dataclass
class CodecArguments:
    """Which codec turns audio into codes, and where downloads come from."""

    feature_extractor_name: str | None = field(
        default=None,
        metadata={
            "help": "A saved AudioFormerFeatureExtractor (folder or Hub name). Default: the one of the checkpoint "
            "(training scripts), else one built from --codec_name_or_path."
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
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the one of `hf auth login`)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow dataset / model code from the Hub."})

    def __post_init__(self):
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError(f"--max_duration must be positive, got {self.max_duration}.")

    def codec_overrides(self) -> dict:
        """The codec settings given on the command line, which override a loaded feature extractor's."""
        given = {"codec_name_or_path": self.codec_name_or_path, "bandwidth": self.bandwidth}
        given["max_duration"] = self.max_duration
        return {key: value for key, value in given.items() if value is not None}


@dataclass
class AudioDataArguments:
    """Where the audio comes from."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset name, or a builder such as 'audiofolder' (with --data_dir)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    data_dir: str | None = field(default=None, metadata={"help": "Local audiofolder (split or class sub-folders)."})
    train_file: str | None = field(
        default=None, metadata={"help": "CSV / JSON-lines file with a column of audio paths."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Same, for evaluation."})
    data_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "WebDataset tar shards (brace patterns, globs or paths; local or fsspec URLs), streamed by the "
            "pre-tokenizer; with --dataset_name, the data files of that builder."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream --dataset_name (an IterableDataset), never preparing it on disk (pre-tokenizer)."},
    )
    audio_column_name: str = field(default="audio", metadata={"help": "Column holding the audio."})
    preprocessing_batch_size: int = field(default=8, metadata={"help": "Clips per codec call while tokenizing."})
    overwrite_cache: bool = field(
        default=False, metadata={"help": "Tokenize again from scratch even if finished or partial output exists."}
    )

    def data_sources(self) -> list[bool]:
        """Which kinds of source the flags name: a dataset or audiofolder, data files."""
        return [
            self.dataset_name is not None or self.data_dir is not None,
            self.train_file is not None or self.validation_file is not None,
            self.data_files is not None and self.dataset_name is None,
        ]

    def __post_init__(self):
        sources = self.data_sources()
        names = "--dataset_name / --data_dir, --train_file / --validation_file, --data_files" + (
            ", or --tokenized_dataset" if hasattr(self, "tokenized_dataset") else ""
        )
        if sum(sources) == 0:
            raise ValueError(f"No data: pass {names}.")
        if sum(sources) > 1:
            raise ValueError(f"Pass only one data source: {names}.")
        if self.preprocessing_batch_size < 1:
            raise ValueError(f"--preprocessing_batch_size must be >= 1, got {self.preprocessing_batch_size}.")


def load_audio_splits(data_args: AudioDataArguments, codec_args: CodecArguments) -> datasets.DatasetDict:
    """The audio source the flags name (`audio_io.load_audio_dataset`), its audio column left undecoded. Tar shards
    and streamed datasets are not tables: `tokenize_shards.shard_sources` reads those."""
    if data_args.streaming or data_args.data_files is not None:
        raise ValueError("--data_files / --streaming name input shards: read them with tokenize_shards.shard_sources.")
    return load_audio_dataset(
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.data_dir,
        data_args.train_file,
        data_args.validation_file,
        data_args.audio_column_name,
        codec_args.cache_dir,
        token=codec_args.token,
        trust_remote_code=codec_args.trust_remote_code,
    )


def load_feature_extractor(
    codec_args: CodecArguments, saved: str | None = None, settings: dict | None = None
) -> AudioFormerFeatureExtractor:
    """
    The run's feature extractor: --feature_extractor_name, else `saved` (a folder or Hub name holding one, e.g. the
    checkpoint's), else one built from `settings` (e.g. those a tokenized dataset was made with), else a new one on
    --codec_name_or_path (default: the paper's codec). --codec_name_or_path, --bandwidth and --max_duration override
    what was loaded.
    """
    overrides = codec_args.codec_overrides()
    source = codec_args.feature_extractor_name or saved
    if source is not None:
        return AudioFormerFeatureExtractor.from_pretrained(
            source, cache_dir=codec_args.cache_dir, token=codec_args.token, **overrides
        )
    settings = {k: v for k, v in (settings or {}).items() if k != "feature_extractor_type"}
    settings.update(overrides)
    settings.setdefault("codec_name_or_path", DEFAULT_CODEC)
    return AudioFormerFeatureExtractor(**settings)


__all__ = ["CodecArguments", "AudioDataArguments", "load_audio_splits", "load_feature_extractor"]
