"""
AudioFormer for the HEAR benchmark (HEAR 2021 common API): `python -m heareval.embeddings.runner audioformer_hear
--model CHECKPOINT_FOLDER`. See `hear_api.py`.
"""

from .hear_api import (
    HEAR_SAMPLE_RATES,
    AudioFormerHEARModel,
    get_scene_embeddings,
    get_timestamp_embeddings,
    load_model,
)


__all__ = [
    "AudioFormerHEARModel",
    "load_model",
    "get_scene_embeddings",
    "get_timestamp_embeddings",
    "HEAR_SAMPLE_RATES",
]
