"""AudioFormer configuration.

AudioFormer is RoFormer (rotary position embedding, post-norm BERT blocks) over the discrete
acoustic codes of EnCodec (paper sections 3.1-3.2). The field names are RoFormer's, so a
`RoFormerConfig` and an `AudioFormerConfig` with the same numbers describe the same network.
"""

import inspect
import math
import os
import shutil

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import TRANSFORMERS_DYNAMIC_MODULE_NAME


# The token-id contract (paper 4.2), defined here once; the feature extractor, the code-id tokenizer and the
# collators import it. An EnCodec code `c` (0..CODEBOOK_SIZE - 1) is the id `c + CODE_OFFSET`.
BOA_TOKEN_ID = 0
PAD_TOKEN_ID = 1
EOA_TOKEN_ID = 2
CODE_OFFSET = 3
CODEBOOK_SIZE = 1024
MASK_TOKEN_ID = CODE_OFFSET + CODEBOOK_SIZE  # 1027
VOCAB_SIZE = MASK_TOKEN_ID + 1  # 1028
# The paper's codec (3.1): EnCodec 24 kHz; at 3 kbps it gives 4 codebooks of CODEBOOK_SIZE codes, 75 frames/s.
DEFAULT_CODEC = "facebook/encodec_24khz"

MULTI_LABEL_LOSSES = ("lsep", "bce")


def save_remote_code(obj, save_directory: str | os.PathLike) -> str:
    """Copies the file defining `type(obj)` and this file into `save_directory` (Hub remote code) and returns the
    `auto_map` entry `"<module>.<Class>"`. The feature extractor and the code-id tokenizer import the contract above
    from this file: beside them in a published folder, in another package in this project, where transformers'
    copier (which looks beside the importing file) would not find it."""
    os.makedirs(save_directory, exist_ok=True)
    module_file = inspect.getfile(type(obj))
    for source in (module_file, __file__):
        shutil.copyfile(source, os.path.join(save_directory, os.path.basename(source)))
    return f"{os.path.splitext(os.path.basename(module_file))[0]}.{type(obj).__name__}"


# Options added after the paper's model, with the value that means the paper's model: a config holding that value
# is saved without the key, so the paper's checkpoints keep their config.json.
PAPER_VALUES_NOT_SAVED = {"input_codebooks": None, "classifier_batch_norm": False}


@strict
class AudioFormerConfig(PreTrainedConfig):
    r"""
    Configuration of an AudioFormer model. The defaults are the paper's (section 4.2): 12 layers,
    hidden size 768, 12 heads, vocabulary 1028 = 1024 EnCodec codes + `<BOA>`, `<PAD>`, `<EOA>`,
    `<MASK>`.

    Args:
        vocab_size: number of token ids; code `c` of a codebook is id `c + 3`.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
        hidden_dropout_prob, attention_probs_dropout_prob, type_vocab_size, initializer_range,
        layer_norm_eps, rotary_value: as in `RoFormerConfig`. `num_hidden_layers=0` is a bag of embeddings: a
            classifier of it reads the mean of its (fused) code embeddings, with no attention (a few-label
            baseline; masked-LM pretraining refuses it, having no context to predict from).
        max_position_embeddings: longest sequence, `<BOA>` and `<EOA>` included (a 10 s clip is 752).
        num_codebooks: codebooks the feature extractor produces (3 kbps EnCodec = 4).
        codebook_index: which codebook row of a `(batch, num_codebooks, seq_len)` input the model
            reads (0 = C1, the paper's anchor).
        input_codebooks: the codebook rows a *fused* model reads at once, e.g. `[0, 1, 2, 3]`: a frame's embedding
            is the sum of one embedding per codebook, and masked-LM pretraining predicts each of them. None (the
            default, the paper) reads `[codebook_index]` only; a one-entry list means the same and is stored as
            `codebook_index`. A fused model's `codebook_index` is its first input codebook.
        classifier_dropout: dropout before the classification head (`hidden_dropout_prob` if None).
        classifier_batch_norm: the classification head standardises its pooled features over the batch
            (`BatchNorm1d` without affine parameters, running statistics at inference), as MAE's linear probes do:
            mean-pooled features vary little between clips against their common mean, which a linear classifier
            trained by gradient descent learns slowly from. False (the paper): no normalisation.
        multi_label_loss: `"lsep"` (paper eq. 7, default) or `"bce"` for multi-label classification.
        decision_thresholds: multi-label models: the per-class decision thresholds calibrated on a validation
            split by `run_classification.py`, in the logit units of the classifier as trained. A record:
            `AudioFormerForAudioClassification.fold_decision_thresholds` has moved them into the classifier's bias,
            so the saved model's logit 0 (sigmoid 0.5) is each class's threshold for every client (transformers'
            stock pipeline included); nothing applies them again. None: not calibrated (see
            `long_audio.score_description`).

    Example:

    ```python
    >>> from modeling_audioformer import AudioFormerConfig, AudioFormerModel
    >>> config = AudioFormerConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    >>> model = AudioFormerModel(config)
    ```
    """

    model_type = "audioformer"
    # Outputs Trainer's evaluation loop need not gather (only the logits feed the metrics).
    keys_to_ignore_at_inference = ["pooled_output", "hidden_states", "attentions"]

    vocab_size: int = VOCAB_SIZE
    embedding_size: int | None = None
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 1536
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    rotary_value: bool = False
    bos_token_id: int | None = BOA_TOKEN_ID
    pad_token_id: int | None = PAD_TOKEN_ID
    eos_token_id: int | None = EOA_TOKEN_ID
    mask_token_id: int | None = MASK_TOKEN_ID
    num_codebooks: int = 4
    codebook_index: int = 0
    input_codebooks: list[int] | None = None
    classifier_dropout: float | int | None = None
    classifier_batch_norm: bool = False
    multi_label_loss: str = "lsep"
    decision_thresholds: list[float | int] | None = None
    is_decoder: bool = False
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        self.embedding_size = self.hidden_size if self.embedding_size is None else self.embedding_size
        self.normalize_input_codebooks()
        self.raise_if_inconsistent()
        super().__post_init__(**kwargs)
        self.raise_if_bad_thresholds()  # again: `num_labels=` only sets id2label in the parent's __post_init__

    @property
    def custom_pipelines(self) -> dict:
        """The pipelines a published folder declares (`{"audio-classification": ...}`, the class in `long_audio.py`).

        transformers' `pipeline()` refuses a task declared here without `trust_remote_code=True`, even when this
        project is installed and its own classes load the folder; so only the copy of this class that transformers
        imports as remote code reports them. With the project installed (its classes registered, which transformers
        prefers to remote code even with `trust_remote_code=True`), the task runs transformers' stock pipeline, or
        the project's with `pipeline_class=AudioFormerAudioClassificationPipeline`.
        """
        if type(self).__module__.startswith(TRANSFORMERS_DYNAMIC_MODULE_NAME + "."):
            return self.__dict__.get("custom_pipelines", {})
        return {}

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict) -> None:
        self.__dict__["custom_pipelines"] = value  # saved with the rest of `__dict__`

    def to_dict(self) -> dict:
        # The paper's config is saved exactly as before these options existed: a key at its paper value is left out.
        output = super().to_dict()
        for name, paper_value in PAPER_VALUES_NOT_SAVED.items():
            if name in output and output[name] is paper_value:
                del output[name]
        return output

    @property
    def is_fused(self) -> bool:
        """Whether the model reads several codebooks of a frame at once (`input_codebooks`)."""
        return self.input_codebooks is not None

    @property
    def read_codebooks(self) -> list[int]:
        """The codebook rows the model reads: `input_codebooks`, or `[codebook_index]`."""
        return list(self.input_codebooks) if self.input_codebooks is not None else [self.codebook_index]

    def normalize_input_codebooks(self) -> None:
        """`[k]` -> `codebook_index = k`, `input_codebooks = None` (the paper's model, RoFormer's weights); a fused
        model's `codebook_index` is its first input codebook (the row FT2 and the card name as its anchor)."""
        codebooks = self.input_codebooks
        if codebooks is None or not isinstance(codebooks, (list, tuple)) or not codebooks:
            return  # None, or malformed: raise_if_inconsistent names the problem
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in codebooks):
            return
        self.input_codebooks = None if len(codebooks) == 1 else [int(k) for k in codebooks]
        self.codebook_index = int(codebooks[0])

    def raise_if_inconsistent(self):
        """Raise a ValueError naming the first inconsistent field (plain ValueError, not a strict-dataclass error)."""
        if self.num_hidden_layers < 0:
            raise ValueError(f"`num_hidden_layers` must be 0 or more, got {self.num_hidden_layers}.")
        positive = (
            "vocab_size",
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "num_codebooks",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        if (self.hidden_size // self.num_attention_heads) % 2 != 0:
            raise ValueError(
                f"The head size hidden_size / num_attention_heads = {self.hidden_size // self.num_attention_heads} "
                "must be even for the rotary position embedding."
            )
        if not 0 <= self.codebook_index < self.num_codebooks:
            raise ValueError(
                f"`codebook_index` ({self.codebook_index}) must be in [0, {self.num_codebooks - 1}] "
                f"for a codec with `num_codebooks`={self.num_codebooks}."
            )
        self.raise_if_bad_input_codebooks()
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
        if self.multi_label_loss not in MULTI_LABEL_LOSSES:
            raise ValueError(f"`multi_label_loss` must be one of {MULTI_LABEL_LOSSES}, got {self.multi_label_loss!r}.")
        # The padding id must be a token (the embedding's padding row, the padding mask). The others may lie past a
        # vocabulary shrunk by `resize_token_embeddings`, as transformers allows (it warns): the model then cannot read
        # them, e.g. `<MASK>` (MLM pretraining) after resizing to fewer ids.
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"`pad_token_id` ({self.pad_token_id}) must be a token id in [0, {self.vocab_size - 1}].")
        for name in ("bos_token_id", "eos_token_id", "mask_token_id"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"`{name}` ({getattr(self, name)}) must be a token id (>= 0) or None.")
        self.raise_if_bad_thresholds()

    def raise_if_bad_input_codebooks(self):
        """`input_codebooks`: None, or distinct codebook rows of the codec, the first one `codebook_index`."""
        codebooks = self.input_codebooks
        if codebooks is None:
            return
        if not isinstance(codebooks, (list, tuple)) or not codebooks:
            raise ValueError(
                f"`input_codebooks` must be None or a non-empty list of codebook rows, got {codebooks!r}."
            )
        for k in codebooks:
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < self.num_codebooks:
                raise ValueError(
                    f"`input_codebooks` holds {k!r}, which is not a codebook row of a codec with `num_codebooks`="
                    f"{self.num_codebooks} (rows 0..{self.num_codebooks - 1})."
                )
        repeated = sorted({k for k in codebooks if list(codebooks).count(k) > 1})
        if repeated:
            raise ValueError(f"`input_codebooks` {list(codebooks)} names codebook {repeated[0]} more than once.")
        if self.codebook_index != codebooks[0]:
            raise ValueError(
                f"A fused model's `codebook_index` ({self.codebook_index}) must be its first input codebook "
                f"({codebooks[0]}, `input_codebooks`={list(codebooks)})."
            )

    def raise_if_bad_thresholds(self):
        """`decision_thresholds`: None, or one finite number per class (as many as `id2label` holds)."""
        thresholds = self.decision_thresholds
        if thresholds is None:
            return
        if not isinstance(thresholds, (list, tuple)) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in thresholds
        ):
            raise ValueError(f"`decision_thresholds` must be None or a list of finite numbers, got {thresholds!r}.")
        if self.id2label is not None and len(thresholds) != len(self.id2label):
            raise ValueError(
                f"`decision_thresholds` has {len(thresholds)} entries for {len(self.id2label)} labels; set it to "
                "None when the classes change (a new classifier has no calibrated thresholds)."
            )


__all__ = [
    "AudioFormerConfig",
    "BOA_TOKEN_ID",
    "PAD_TOKEN_ID",
    "EOA_TOKEN_ID",
    "CODE_OFFSET",
    "CODEBOOK_SIZE",
    "MASK_TOKEN_ID",
    "VOCAB_SIZE",
    "DEFAULT_CODEC",
    "save_remote_code",
]
