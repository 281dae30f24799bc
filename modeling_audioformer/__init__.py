"""AudioFormer models for Hugging Face Transformers.

Importing this package registers the AudioFormer classes with the Auto classes, so that
`AutoModel.from_pretrained(path)` works for a saved AudioFormer without `trust_remote_code`, and marks them
for `save_pretrained` to write an `auto_map` (for users who load with `trust_remote_code=True` instead).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

from .configuration_audioformer import AudioFormerConfig
from .losses import lsep_loss, mpc_loss
from .modeling_audioformer import (
    AudioFormerClassifierOutput,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerForSequenceClassification,
    AudioFormerModel,
    AudioFormerPreTrainedModel,
    masked_mean,
    select_codebook,
)


AutoConfig.register("audioformer", AudioFormerConfig, exist_ok=True)
AutoModel.register(AudioFormerConfig, AudioFormerModel, exist_ok=True)
AutoModelForMaskedLM.register(AudioFormerConfig, AudioFormerForMaskedLM, exist_ok=True)
AutoModelForAudioClassification.register(AudioFormerConfig, AudioFormerForAudioClassification, exist_ok=True)
AutoModelForSequenceClassification.register(AudioFormerConfig, AudioFormerForAudioClassification, exist_ok=True)

AudioFormerConfig.register_for_auto_class()
AudioFormerModel.register_for_auto_class("AutoModel")
AudioFormerForMaskedLM.register_for_auto_class("AutoModelForMaskedLM")
AudioFormerForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")

__all__ = [
    "AudioFormerConfig",
    "AudioFormerPreTrainedModel",
    "AudioFormerModel",
    "AudioFormerForMaskedLM",
    "AudioFormerForAudioClassification",
    "AudioFormerForSequenceClassification",
    "AudioFormerClassifierOutput",
    "lsep_loss",
    "mpc_loss",
    "masked_mean",
    "select_codebook",
]
