"""
Audio -> EnCodec code ids for AudioFormer.

- `AudioFormerFeatureExtractor` (feature_extraction_audioformer.py): raw audio -> `input_ids` (B, 4, frames + 2).
- `AudioFormerTokenizer` (tokenization_audioformer.py): ids <-> readable tokens (`<c12>`, `<MASK>`), for fill-mask.
- `tokenize_dataset.py`: pre-tokenizes a whole audio dataset once
  (`python -m audioformer.tokenization.tokenize_dataset`).
- `audio_io.py`: decoding and listing audio; `audio_arguments.py`: the codec and audio flags; `processes.py`: the
  processes of a multi-process run; `folder_lock.py`: one run per output folder.
- `convert_encodec.py`: Meta's EnCodec checkpoint -> transformers. (The tiny seeded test codec is
  `audioformer.training.tiny_codec`.)
"""

from .feature_extraction_audioformer import AudioFormerFeatureExtractor
from .tokenization_audioformer import AudioFormerTokenizer


# save_pretrained writes `auto_map`, so saved folders also load as Hub remote code.
AudioFormerFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
AudioFormerTokenizer.register_for_auto_class("AutoTokenizer")

try:  # the config lives in modeling_audioformer; registration is skipped if that package is unavailable
    from transformers import AutoFeatureExtractor, AutoTokenizer

    from audioformer.modeling_audioformer.configuration_audioformer import AudioFormerConfig

    AutoFeatureExtractor.register(AudioFormerConfig, AudioFormerFeatureExtractor, exist_ok=True)
    AutoTokenizer.register(AudioFormerConfig, slow_tokenizer_class=AudioFormerTokenizer, exist_ok=True)
except ImportError:
    pass

__all__ = ["AudioFormerFeatureExtractor", "AudioFormerTokenizer"]
