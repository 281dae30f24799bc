"""
The Hugging Face Space of a published AudioFormer checkpoint: its files (`space_files`, `write_space`) and their
upload (`publish_space`).
`python -m audioformer.model_cards.publish OUTPUT_DIR --repo_id ORG/NAME --space_id ORG/NAME-demo`
calls it after uploading the model.

A Space holds:

- `app.py`: serves the page of `audioformer_space.py` for the checkpoint (from `space_app_template.py`);
- `audioformer_space.py`: `model_cards/space.py` as is;
- `long_audio.py`: `modeling_audioformer/long_audio.py` (the scores of the pipeline and the Endpoints handler);
- `requirements.txt`: torch, transformers, soundfile and soxr (resampling) at the versions installed here (the
  Space installs gradio `sdk_version` itself);
- `packages.txt`: ffmpeg, which reads what soundfile cannot (a browser's WebM recording);
- `README.md`: the Space's metadata (`sdk: gradio`, `sdk_version`, `app_file`, `models: [the checkpoint]`) and a
  short text (from `space_card.md`).
"""

import logging
import re
import tempfile
from pathlib import Path
from string import Template

from audioformer.modeling_audioformer import long_audio

from . import space


logger = logging.getLogger(__name__)

# The `space` extra's pin (pyproject.toml), and so the Space's `sdk_version`: the Gradio the page is tested with.
GRADIO_VERSION = "6.31.0"
APP_TEMPLATE = Path(__file__).resolve().parent / "space_app_template.py"
CARD_TEMPLATE = Path(__file__).resolve().parent / "space_card.md"
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def check_repo_id(repo_id: str, what: str = "repo_id") -> str:
    if not REPO_ID.fullmatch(repo_id or ""):
        raise ValueError(f"{what} must look like 'org/name', got {repo_id!r}.")
    return repo_id


def space_url(space_id: str) -> str:
    return f"https://huggingface.co/spaces/{space_id}"


def requirements() -> str:
    """requirements.txt: what the page needs besides gradio, pinned to the versions installed here."""
    import soundfile
    import soxr
    import torch
    import transformers

    return (
        "# The versions the page was tested with; the Space installs gradio (README.md: sdk_version) itself.\n"
        f"torch=={torch.__version__.split('+')[0]}\n"
        f"transformers=={transformers.__version__}\n"
        f"soundfile=={soundfile.__version__}\n"
        f"soxr=={soxr.__version__}\n"
    )


def space_readme(model_id: str) -> str:
    """README.md of the Space: metadata the Hub reads (sdk, sdk_version, app_file, models) and a short text."""
    import sys

    from huggingface_hub import SpaceCardData

    metadata = SpaceCardData(
        title=f"AudioFormer: {model_id.split('/')[-1]}"[:60],
        emoji="🔊",
        colorFrom="indigo",
        colorTo="gray",
        sdk="gradio",
        sdk_version=GRADIO_VERSION,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        pinned=False,
        license="apache-2.0",
        models=[model_id],
        tags=["audioformer", "audio", "audio-classification"],
        short_description="Try an AudioFormer audio model on your own clips",
    )
    return Template(CARD_TEMPLATE.read_text(encoding="utf-8")).substitute(
        metadata=metadata.to_yaml().strip(),
        model_id=model_id,
        max_minutes=f"{space.MAX_MINUTES:g}",
        gradio_version=GRADIO_VERSION,
    )


def space_files(model_id: str) -> dict[str, str]:
    """`{file name: text}` of the Space that serves the page of the Hub checkpoint `model_id`."""
    check_repo_id(model_id, "the model's repo_id")
    return {
        "README.md": space_readme(model_id),
        "app.py": Template(APP_TEMPLATE.read_text(encoding="utf-8")).substitute(model_id=model_id),
        "audioformer_space.py": Path(space.__file__).read_text(encoding="utf-8"),
        "long_audio.py": Path(long_audio.__file__).read_text(encoding="utf-8"),
        "packages.txt": "ffmpeg\n",
        "requirements.txt": requirements(),
    }


def write_space(folder, model_id: str) -> list[str]:
    """Writes the Space's files for `model_id` into `folder`; returns their names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = space_files(model_id)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return sorted(files)


def publish_space(
    space_id: str,
    model_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload the AudioFormer page",
    api=None,
):
    """Creates the Gradio Space `space_id` (if needed) and uploads the page of `model_id`; returns the commit info."""
    from huggingface_hub import HfApi

    check_repo_id(space_id, "space_id")
    api = api or HfApi(token=token)
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True, token=token)
    if private:
        logger.warning(
            "%s is private: give the Space %s a secret HF_TOKEN that can read it (Space settings).", model_id, space_id
        )
    with tempfile.TemporaryDirectory() as folder:
        write_space(folder, model_id)
        return api.upload_folder(
            repo_id=space_id, repo_type="space", folder_path=folder, commit_message=commit_message, token=token
        )
