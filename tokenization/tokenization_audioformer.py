"""
A code-id tokenizer: readable tokens <-> AudioFormer ids, for the `fill-mask` pipeline, for
`DataCollatorForLanguageModeling`-style collators (mask / pad token ids, special-token masks) and for printing.

Vocabulary (1028 ids, fixed by the token-id contract): `<BOA>`=0, `<PAD>`=1, `<EOA>`=2, `<c0>`..`<c1023>` = 3..1026
(EnCodec code c -> id c + 3), `<MASK>`=1027. Text is whitespace-separated tokens, e.g. `"<c12> <MASK> <c7>"`;
encoding adds `<BOA>` ... `<EOA>` like the feature extractor does for each codebook row. Audio itself goes through
`AudioFormerFeatureExtractor`; this class never sees audio.
"""

from transformers import PreTrainedTokenizer


NUM_CODES = 1024
SPECIAL_TOKENS = {"<BOA>": 0, "<PAD>": 1, "<EOA>": 2, "<MASK>": 3 + NUM_CODES}


class AudioFormerTokenizer(PreTrainedTokenizer):
    """Whitespace tokenizer over the fixed AudioFormer vocabulary (no vocabulary file)."""

    vocab_files_names = {}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, num_codes: int = NUM_CODES, **kwargs):
        self.num_codes = num_codes
        self._vocab = {"<BOA>": 0, "<PAD>": 1, "<EOA>": 2}
        self._vocab.update({f"<c{c}>": c + 3 for c in range(num_codes)})
        self._vocab["<MASK>"] = num_codes + 3
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

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        return ()  # the vocabulary is fixed by `num_codes`, saved in tokenizer_config.json


__all__ = ["AudioFormerTokenizer"]
