"""AudioFormer: the one import path of the installed project.

The repository keeps the design's top-level folders (`modeling_audioformer/`, `tokenization/`, `training/`,
`model_cards/`); `pyproject.toml` installs them under this package (`audioformer.modeling_audioformer`,
`audioformer.tokenization`, ...), so a user's own `training.py` or `tokenization.py` cannot shadow them.

    import audioformer  # registers the AudioFormer classes with transformers' Auto classes
    from audioformer import AudioFormerFeatureExtractor, AudioFormerForAudioClassification
"""

from .modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerForSequenceClassification,
    AudioFormerModel,
    AudioFormerPreTrainedModel,
)
from .tokenization import AudioFormerFeatureExtractor, AudioFormerTokenizer


__all__ = [
    "AudioFormerConfig",
    "AudioFormerPreTrainedModel",
    "AudioFormerModel",
    "AudioFormerForMaskedLM",
    "AudioFormerForAudioClassification",
    "AudioFormerForSequenceClassification",
    "AudioFormerFeatureExtractor",
    "AudioFormerTokenizer",
]
