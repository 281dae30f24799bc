"""
Load RoFormer-format checkpoints into AudioFormer classes, with a report of what was mapped, skipped or missing.

Accepted sources:
- a transformers folder of `RoFormerModel` / `RoFormerForMaskedLM` / AudioFormer (`config.json` +
  `model.safetensors`, sharded safetensors, or `pytorch_model.bin`), or a single `.safetensors` file;
- a Lightning-style training checkpoint (`.pt` / `.ckpt` / `.bin`) whose `state_dict` wraps a RoFormer backbone
  under a prefix (`model.roformer.`, `model.`, `module.`, ...), the way the paper's training scripts save.

Pickled files are read with `torch.load(weights_only=True)` only: tensors and plain containers, no code.

    python -m audioformer.modeling_audioformer.convert_checkpoint last.ckpt converted/ --task mlm \
        --num_attention_heads 12
"""

import argparse
import json
import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .configuration_audioformer import AudioFormerConfig
from .modeling_audioformer import AudioFormerForAudioClassification, AudioFormerForMaskedLM, AudioFormerModel
from .pickle_detection import describe_pickle


TASKS = {"base": AudioFormerModel, "mlm": AudioFormerForMaskedLM, "classification": AudioFormerForAudioClassification}
ANCHOR = "embeddings.word_embeddings.weight"  # every RoFormer backbone has it; its prefix locates the backbone
# Buffers / tied weights whose absence loses nothing: recomputed or shared on load.
HARMLESS_MISSING = ("encoder.embed_positions.weight", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
ROFORMER_FIELDS = (
    "vocab_size",
    "embedding_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "rotary_value",
)
# The code-id contract (configuration_audioformer.py, paper 4.2). Taken from an AudioFormer config.json, never from
# a RoFormer one, whose pad_token_id (0 by default) is a text-tokenizer id: as AudioFormer's it would make <BOA>
# padding.
TOKEN_ID_FIELDS = ("bos_token_id", "pad_token_id", "eos_token_id", "mask_token_id")


@dataclass
class ConversionReport:
    """What happened to every tensor. `mapped`: source key -> AudioFormer key."""

    source: str
    backbone_prefix: str
    mapped: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)  # source key -> reason
    missing: list = field(default_factory=list)  # AudioFormer keys left at their initialisation
    harmless_missing: list = field(default_factory=list)  # recomputed buffers / tied weights
    notes: list = field(default_factory=list)  # config decisions the user should know about

    def summary(self) -> str:
        lines = [
            f"source: {self.source}",
            f"backbone prefix: {self.backbone_prefix!r}",
            f"mapped: {len(self.mapped)} tensors",
        ]
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"skipped: {len(self.skipped)}")
        lines += [f"  - {k}: {why}" for k, why in sorted(self.skipped.items())]
        lines.append(f"missing (left initialised): {len(self.missing)}")
        lines += [f"  - {k}" for k in self.missing]
        if self.harmless_missing:
            lines.append(f"not in source but recomputed or tied: {', '.join(self.harmless_missing)}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------


def _load_file(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        disguised = describe_pickle(path)
        if disguised:
            raise ValueError(
                f"{path} is named .safetensors but its content is {disguised}, which safetensors never is; it was "
                "not loaded (a pickle can run code). Find out where it comes from; if you trust it, rename it to "
                ".pt and convert that (tensors only are read, torch.load(weights_only=True))."
            )
        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise ValueError(f"{path} is not a valid safetensors file ({err}): cut short or not safetensors.") from err
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            found = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # not a torch.save zip file
            found = ""
        raise ValueError(
            f"{path} holds pickled Python objects besides tensors{f' ({found})' if found else ''}. This converter "
            "reads tensors and plain containers only (torch.load(weights_only=True)), so that a checkpoint cannot run "
            "code. If you trust the file, extract its state dict yourself (torch.load(path, weights_only=False)"
            "['state_dict']), save it with safetensors.torch.save_file and convert that file."
        ) from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # Lightning
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict) and not torch.is_tensor(obj.get("model")):
        obj = obj["model"]
    if not isinstance(obj, dict) or not any(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path} holds no state dict of tensors (found {type(obj).__name__}).")
    return {k: v for k, v in obj.items() if torch.is_tensor(v)}


def load_source(source) -> tuple[dict, dict]:
    """Returns (state dict, config dict or {}) from a folder or a single checkpoint file."""
    source = Path(source)
    if source.is_dir():
        config = json.loads((source / "config.json").read_text()) if (source / "config.json").is_file() else {}
        index = source / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state = {}
            for shard in shards:
                state.update(_load_file(source / shard))
            return state, config
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (source / name).is_file():
                return _load_file(source / name), config
        raise ValueError(f"{source} has no model.safetensors, sharded safetensors or pytorch_model.bin.")
    if source.is_file():
        return _load_file(source), {}
    raise ValueError(f"Checkpoint {str(source)!r} does not exist.")


def find_backbone_prefix(state_dict: dict) -> str:
    """`"model.roformer.embeddings.word_embeddings.weight"` -> `"model.roformer."`."""
    prefixes = [k[: -len(ANCHOR)] for k in state_dict if k.endswith(ANCHOR)]
    if not prefixes:
        raise ValueError(f"No RoFormer backbone found: no key ends with {ANCHOR!r}.")
    if len(set(prefixes)) > 1:
        raise ValueError(f"Several backbones found under prefixes {sorted(set(prefixes))}; keep one.")
    return prefixes[0]


def config_from_state_dict(state_dict: dict, prefix: str, num_attention_heads: int, **overrides) -> AudioFormerConfig:
    """AudioFormer sizes read off the tensors (heads cannot be: pass them). A fused model's table holds
    `len(input_codebooks) * vocab_size` rows: pass `input_codebooks` to read it as one."""
    word = state_dict[prefix + ANCHOR]
    num_input_codebooks = len(overrides.get("input_codebooks") or [None])
    if word.shape[0] % num_input_codebooks:
        raise ValueError(
            f"{prefix + ANCHOR} has {word.shape[0]} rows, not a multiple of the {num_input_codebooks} input codebooks."
        )
    layers = {
        int(m.group(1)) for k in state_dict if (m := re.match(re.escape(prefix) + r"encoder\.layer\.(\d+)\.", k))
    }
    q = state_dict[prefix + "encoder.layer.0.attention.self.query.weight"]
    inter = state_dict[prefix + "encoder.layer.0.intermediate.dense.weight"]
    kwargs = dict(
        vocab_size=word.shape[0] // num_input_codebooks,
        embedding_size=word.shape[1],
        hidden_size=q.shape[0],
        num_hidden_layers=max(layers) + 1,
        intermediate_size=inter.shape[0],
        num_attention_heads=num_attention_heads,
    )
    pos = state_dict.get(prefix + "encoder.embed_positions.weight")
    if pos is not None:
        kwargs["max_position_embeddings"] = pos.shape[0]
    tok = state_dict.get(prefix + "embeddings.token_type_embeddings.weight")
    if tok is not None:
        kwargs["type_vocab_size"] = tok.shape[0]
    kwargs.update(overrides)
    return AudioFormerConfig(**kwargs)


def config_from_dict(config: dict, **overrides) -> AudioFormerConfig:
    """A RoFormer (or AudioFormer) config.json -> AudioFormerConfig with the same numbers (and, from a RoFormer
    config, AudioFormer's own special token ids)."""
    kwargs = {k: config[k] for k in ROFORMER_FIELDS if k in config}
    audioformer_fields = (
        "num_codebooks",
        "codebook_index",
        "input_codebooks",
        "classifier_dropout",
        "multi_label_loss",
    )
    for k in ("id2label", "label2id", "problem_type") + (
        audioformer_fields + TOKEN_ID_FIELDS if config.get("model_type") == "audioformer" else ()
    ):
        if k in config and config[k] is not None:
            kwargs[k] = config[k]
    if "id2label" in kwargs:
        kwargs["id2label"] = {int(i): label for i, label in kwargs["id2label"].items()}
    kwargs.update(overrides)
    return AudioFormerConfig(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# mapping
# ---------------------------------------------------------------------------------------------------------


def map_keys(state_dict: dict, prefix: str, target_keys: dict) -> tuple[dict, dict, dict]:
    """
    Source keys -> target keys. The backbone (`prefix` + ...) becomes `roformer.` + ... (or bare for
    AudioFormerModel); keys beside the backbone under the same outer prefix (`cls.`, `classifier.`) keep their
    names. `target_keys`: {key: shape}. Returns (new state dict, mapped {src: dst}, skipped {src: reason}).
    """
    outer = prefix[: -len("roformer.")] if prefix.endswith("roformer.") else prefix
    bare = not any(k.startswith("roformer.") for k in target_keys)
    new_state, mapped, skipped = {}, {}, {}
    for key, tensor in state_dict.items():
        if key.startswith(prefix):
            dst = key[len(prefix) :] if bare else "roformer." + key[len(prefix) :]
        elif key.startswith(outer):
            dst = key[len(outer) :]
        else:
            skipped[key] = "outside the model prefix"
            continue
        if dst not in target_keys:
            skipped[key] = f"no AudioFormer parameter {dst!r} in this class"
        elif tuple(tensor.shape) != tuple(target_keys[dst]):
            skipped[key] = f"shape {tuple(tensor.shape)} != AudioFormer {tuple(target_keys[dst])}"
        else:
            new_state[dst] = tensor
            mapped[key] = dst
    return new_state, mapped, skipped


def convert(
    source,
    task: str = "mlm",
    config: AudioFormerConfig | dict | str | None = None,
    num_attention_heads: int | None = None,
    **config_overrides,
):
    """
    Builds the AudioFormer class for `task` ("base", "mlm" or "classification") and loads the RoFormer weights of
    `source` into it. The config comes from `config` (AudioFormerConfig, dict, or path to a config.json / folder),
    else from the source's config.json, else from the tensor shapes (then `num_attention_heads` is required).
    Returns (model, ConversionReport).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}.")
    state_dict, source_config = load_source(source)
    prefix = find_backbone_prefix(state_dict)
    if isinstance(config, (str, Path)):
        path = Path(config)
        config = json.loads((path / "config.json" if path.is_dir() else path).read_text())
    config_dict = {}  # the config.json the numbers came from, if any
    if isinstance(config, AudioFormerConfig):
        pass
    elif isinstance(config, dict) or source_config:
        if num_attention_heads is not None:
            config_overrides["num_attention_heads"] = num_attention_heads
        config_dict = config if isinstance(config, dict) else source_config
        config = config_from_dict(config_dict, **config_overrides)
    else:
        if num_attention_heads is None:
            raise ValueError("The checkpoint has no config: pass num_attention_heads (the paper's is 12) or a config.")
        config = config_from_state_dict(state_dict, prefix, num_attention_heads, **config_overrides)
    model = TASKS[task](config)
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    new_state, mapped, skipped = map_keys(state_dict, prefix, target)
    model.load_state_dict(new_state, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    missing = [k for k in target if k not in new_state]
    harmless = [
        k
        for k in missing
        if k.endswith(HARMLESS_MISSING) or k == "cls.predictions.bias" and "cls.predictions.decoder.bias" in new_state
    ]
    notes = [
        f"{k}={config_dict[k]} of the {config_dict.get('model_type')} config is not used: the model's {k} is "
        f"{getattr(config, k)} (AudioFormer's code ids)"
        for k in TOKEN_ID_FIELDS
        if config_dict.get("model_type") != "audioformer"
        and config_dict.get(k, getattr(config, k)) is not None
        and config_dict.get(k, getattr(config, k)) != getattr(config, k)
    ]
    report = ConversionReport(
        source=str(source),
        backbone_prefix=prefix,
        mapped=mapped,
        skipped=skipped,
        missing=[k for k in missing if k not in harmless],
        harmless_missing=harmless,
        notes=notes,
    )
    return model, report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m audioformer.modeling_audioformer.convert_checkpoint",
        description="Convert a RoFormer / Lightning checkpoint to an AudioFormer folder.",
    )
    parser.add_argument("source", help="checkpoint file (.safetensors, .pt, .ckpt, .bin) or transformers folder")
    parser.add_argument("output_dir")
    parser.add_argument("--task", choices=sorted(TASKS), default="mlm")
    parser.add_argument("--config", default=None, help="AudioFormer / RoFormer config.json (or folder) to use")
    parser.add_argument("--num_attention_heads", type=int, default=None, help="needed when the source has no config")
    parser.add_argument("--num_labels", type=int, default=None, help="for --task classification")
    parser.add_argument(
        "--input_codebooks", type=int, nargs="+", default=None, help="a fused model's codebook rows, e.g. 0 1 2 3"
    )
    parser.add_argument("--strict", action="store_true", help="fail if any parameter is missing")
    args = parser.parse_args(argv)
    overrides = {"num_labels": args.num_labels} if args.num_labels else {}
    if args.input_codebooks:
        overrides.update(input_codebooks=args.input_codebooks, codebook_index=args.input_codebooks[0])
    model, report = convert(
        args.source, task=args.task, config=args.config, num_attention_heads=args.num_attention_heads, **overrides
    )
    print(report.summary())
    if args.strict and report.missing:
        raise SystemExit(f"--strict: {len(report.missing)} parameters missing from the source.")
    model.save_pretrained(args.output_dir)  # safetensors
    Path(args.output_dir, "conversion_report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


if __name__ == "__main__":
    main()
