"""
Publishing a saved AudioFormer output folder to the Hugging Face Hub: safetensors weights, config, remote code, card;
never pickles, never Trainer checkpoints.

    python -m audioformer.model_cards.publish OUTPUT_DIR --repo_id ORG/NAME [--space_id ORG/SPACE] [--private] \
        [--token TOKEN]
        [--dry_run]

With `--space_id`, it also creates or updates a Gradio Space that runs the model on uploaded or recorded audio
(`model_cards/space_repo.py`), and the model card links to it.
"""

import argparse
import logging
import re
from pathlib import Path

from audioformer.modeling_audioformer.pickle_detection import describe_pickle

from .card import link_space
from .remote_code import complete_auto_map
from .space_repo import check_repo_id, publish_space, space_files, space_url
from .widget import EXAMPLE_AUDIO


logger = logging.getLogger(__name__)

# What a Trainer output folder holds besides the model; never uploaded.
IGNORE_PATTERNS = [
    "checkpoint-*",
    "checkpoint-*/**",
    "runs/**",
    "training_args.bin",
    "*.lock",
    ".git/**",
    "__pycache__/**",
    "tmp-*",
]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _is_ignored(rel: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(rel, pattern) or fnmatch(rel.split("/")[0], pattern) for pattern in IGNORE_PATTERNS)


def files_to_upload(folder) -> list[str]:
    """
    The files `publish` would upload (relative paths), after checking the folder. Raises ValueError when there
    is no `config.json`, no safetensors weights, or any pickle that would be uploaded: a pickle suffix (`.bin`,
    `.pt`, ...) or pickle content whatever the name (`modeling_audioformer.pickle_detection`: pickle streams,
    torch.save archives, compressed pickles, numpy object arrays, ...).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder.")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    files = [f for f in files if not _is_ignored(f)]
    if "config.json" not in files:
        raise ValueError(f"{folder} has no config.json: save the model with save_pretrained first.")
    pickles = [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ValueError(
            f"Refusing to publish pickled weights {pickles}: save with safetensors "
            "(save_pretrained(..., safe_serialization=True)) and delete them."
        )
    disguised = [(f, what) for f in files if (what := describe_pickle(folder / f))]
    if disguised:  # loading a pickle can run code: the name of a file does not make it safe
        raise ValueError(
            "Refusing to publish files whose content is a pickle: "
            + "; ".join(f"{f} is {what}" for f, what in disguised)
            + ". Save weights with safetensors and data as JSON / CSV / safetensors, then delete them."
        )
    if not any(f.endswith(".safetensors") and "/" not in f for f in files):  # not a codec/ saved beside them
        raise ValueError(f"{folder} has no .safetensors weights: save the model with save_pretrained first.")
    return files


def _fill_widget_src(folder: Path, repo_id: str, revision: str = "main"):
    """The widget needs an absolute URL for its example clip; the repository is only known now."""
    readme = folder / "README.md"
    if readme.is_file() and (folder / EXAMPLE_AUDIO).is_file():
        url = f"https://huggingface.co/{repo_id}/resolve/{revision}/{EXAMPLE_AUDIO}"
        text = readme.read_text(encoding="utf-8")
        readme.write_text(
            re.sub(rf"(\bsrc:\s*){re.escape(EXAMPLE_AUDIO)}\s*$", rf"\g<1>{url}", text, flags=re.MULTILINE),
            encoding="utf-8",
        )


def publish(
    folder,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload AudioFormer",
    space_id: str | None = None,
    api=None,
):
    """
    Creates `repo_id` (if needed) and uploads the checked folder; returns the commit info. With `space_id`, the card
    links to that Space, and the Space (created if needed) gets the page that runs the model (`publish_space`).
    """
    from huggingface_hub import HfApi

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}.")
    if space_id is not None:
        check_repo_id(space_id, "space_id")
    folder = Path(folder)
    files = files_to_upload(folder)
    if "README.md" not in files:
        logger.warning("%s has no README.md; write one with write_model_card() for a useful model page.", folder)
    complete_auto_map(folder)
    _fill_widget_src(folder, repo_id)
    if space_id is not None:
        link_space(folder, space_id)
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        ignore_patterns=IGNORE_PATTERNS,
        token=token,
    )
    if space_id is not None:
        publish_space(space_id, repo_id, private=private, token=token, api=api)
    return info


def publish_from_training_args(training_args, output_dir: str | None = None):
    """
    What the training scripts call instead of `trainer.push_to_hub()` (which would overwrite the card written by
    `write_model_card` with the Trainer's generic one and upload `training_args.bin`): uploads `output_dir` to
    `training_args.hub_model_id` (default: the output folder's name under the user's account).
    """
    output_dir = output_dir or training_args.output_dir
    repo_id = training_args.hub_model_id or Path(output_dir).resolve().name
    if "/" not in repo_id:
        from huggingface_hub import whoami

        repo_id = f"{whoami(token=training_args.hub_token)['name']}/{repo_id}"
    return publish(
        output_dir,
        repo_id,
        private=bool(getattr(training_args, "hub_private_repo", False)),
        token=training_args.hub_token,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m audioformer.model_cards.publish",
        description="Upload a saved AudioFormer output folder (safetensors only) to the Hugging Face Hub.",
    )
    parser.add_argument("output_dir", help="folder written by run_mlm.py / run_classification.py")
    parser.add_argument("--repo_id", required=True, help="ORG/NAME on the Hub")
    parser.add_argument(
        "--space_id",
        default=None,
        help="ORG/NAME of a Gradio Space to create or update with a page that runs the model (the card links to it)",
    )
    parser.add_argument("--private", action="store_true", help="create the repository (and the Space) as private")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN / `hf auth login`)")
    parser.add_argument("--dry_run", action="store_true", help="check the folder and list the files; upload nothing")
    args = parser.parse_args(argv)
    if args.dry_run:
        for name in files_to_upload(args.output_dir):
            print(name)
        if args.space_id:
            print(f"Space {check_repo_id(args.space_id, 'space_id')} ({space_url(args.space_id)}):")
            for name in sorted(space_files(args.repo_id)):
                print(f"  {name}")
        return None
    info = publish(args.output_dir, args.repo_id, private=args.private, token=args.token, space_id=args.space_id)
    print(f"[hub] uploaded {args.output_dir} to https://huggingface.co/{args.repo_id}")
    if args.space_id:
        print(f"[hub] its page: https://huggingface.co/spaces/{args.space_id}")
    return info


if __name__ == "__main__":
    main()
