"""
A code-id tokenizer: readable tokens <-> AudioFormer ids, for the `fill-mask` pipeline, for
`DataCollatorForLanguageModeling`-style collators (mask / pad token ids, special-token masks) and for printing.

Vocabulary (1028 ids, fixed by the token-id contract): `<BOA>`=0, `<PAD>`=1, `<EOA>`=2, `<c0>`..`<c1023>` = 3..1026
(EnCodec code c -> id c + 3), `<MASK>`=1027. Text is whitespace-separated tokens, e.g. `"<c12> <MASK> <c7>"`;
encoding adds `<BOA>` ... `<EOA>` like the feature extractor does for each codebook row. Audio itself goes through
`AudioFormerFeatureExtractor`; this class never sees audio.
"""

from transformers import PreTrainedTokenizer


try:  # this project: the contract lives in the model package
    from audioformer.modeling_audioformer.configuration_audioformer import (
        BOA_TOKEN_ID,
        CODE_OFFSET,
        CODEBOOK_SIZE,
        EOA_TOKEN_ID,
        PAD_TOKEN_ID,
        save_remote_code,
    )
except ImportError:  # Hub remote code: configuration_audioformer.py sits beside this file
    from .configuration_audioformer import (
        BOA_TOKEN_ID,
        CODE_OFFSET,
        CODEBOOK_SIZE,
        EOA_TOKEN_ID,
        PAD_TOKEN_ID,
        save_remote_code,
    )


class AudioFormerTokenizer(PreTrainedTokenizer):
    """Whitespace tokenizer over the fixed AudioFormer vocabulary (no vocabulary file)."""

    vocab_files_names = {}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, num_codes: int = CODEBOOK_SIZE, **kwargs):
        self.num_codes = num_codes
        self._vocab = {"<BOA>": BOA_TOKEN_ID, "<PAD>": PAD_TOKEN_ID, "<EOA>": EOA_TOKEN_ID}
        self._vocab.update({f"<c{c}>": c + CODE_OFFSET for c in range(num_codes)})
        self._vocab["<MASK>"] = num_codes + CODE_OFFSET
        self._ids = {i: t for t, i in self._vocab.items()}
        for key, token in (
            ("bos_token", "<BOA>"),
            ("eos_token", "<EOA>"),
            ("pad_token", "<PAD>"),
            ("mask_token", "<MASK>"),
        ):
            kwargs.setdefault(key, token)
        kwargs.setdefault("special_tokens_pattern", "bos_eos")
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def _tokenize(self, text, **kwargs):
        return text.split()

    def _convert_token_to_id(self, token: str) -> int:
        if token not in self._vocab:
            raise ValueError(
                f"Unknown token {token!r}: use <c0>..<c{self.num_codes - 1}>, <BOA>, <EOA>, <PAD>, <MASK>."
            )
        return self._vocab[token]

    def _convert_id_to_token(self, index: int) -> str:
        if index not in self._ids:
            raise ValueError(f"Id {index} is outside the AudioFormer vocabulary (0..{self.vocab_size - 1}).")
        return self._ids[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedTokenizer.save_pretrained`; with the Auto class registered (importing `tokenization` does) it
        also writes the remote code, this file and `configuration_audioformer.py` (see `save_remote_code`)."""
        if self._auto_class is None:
            return super().save_pretrained(save_directory, *args, **kwargs)
        self.init_kwargs["auto_map"] = {self._auto_class: [save_remote_code(self, save_directory), None]}
        self._auto_class = None  # an instance attribute over the class's: the code is written above
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            del self._auto_class

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        return ()  # the vocabulary is fixed by `num_codes`, saved in tokenizer_config.json


__all__ = ["AudioFormerTokenizer"]
