"""AudioFormer: audio classification from EnCodec acoustic codes, as a Hugging Face Transformers integration."""

from setuptools import setup

setup(
    name="audioformer",
    version="0.1.0",
    description="AudioFormer (EnCodec codes + RoFormer MLM pretraining + FT1/FT2 fine-tuning) for Hugging Face Transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # model_cards/ ships its card template and handler as package data.
    packages=["modeling_audioformer", "tokenization", "training", "training.metrics", "model_cards"],
    package_data={"training.metrics": ["*/*.py"], "model_cards": ["*.md", "*.py"]},
    py_modules=["run_mlm", "run_classification"],
    # Lower bounds are the versions CI tests (transformers 5.0 lacks the APIs used here); CI pins torch only.
    install_requires=[
        "torch>=2.4",
        "transformers>=5.24,<6",  # dataclass (@strict) configs, Trainer.end
        "safetensors>=0.4",
        "numpy>=1.24",
        "datasets>=5.0",
        "accelerate>=1.15",
        "evaluate>=0.4.6",
        "huggingface_hub>=2.0",
        "soundfile>=0.12",
        "tqdm>=4.60",
    ],
    extras_require={
        # Meta's reference codec, for the parity test only. It declares torchaudio, which would pull a second torch:
        # install it with `pip install --no-deps encodec==0.1.1` (README) beside these.
        "encodec": ["einops>=0.6"],
        # Training curves and per-class AP charts in the model cards (skipped without it).
        "plots": ["matplotlib>=3.7"],
        # Tests check against scipy (resampling) and scikit-learn (average precision, F1).
        "dev": ["pytest>=7", "einops>=0.6", "matplotlib>=3.7", "scipy>=1.10", "scikit-learn>=1.3"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Analysis",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
