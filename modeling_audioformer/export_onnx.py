"""
Export an AudioFormer checkpoint to ONNX: codes -> logits (`model.onnx`) and codes -> hidden states (`encoder.onnx`),
with dynamic batch and length, each checked against the eager model with onnxruntime on a padded and an unpadded
batch before the command returns.

    python -m audioformer.modeling_audioformer.export_onnx CHECKPOINT OUT            # both graphs, checked
    python -m audioformer.modeling_audioformer.export_onnx CHECKPOINT OUT --no_encoder

Both graphs take the code ids of the model's codebook row, `input_ids` int64 `(batch, seq_len)` (`<BOA>`, code + 3,
..., `<EOA>`, then `<PAD>`), and `attention_mask` int64 `(batch, seq_len)` (1 = real, 0 = padding), with
`2 <= seq_len <= config.max_position_embeddings`. From the feature extractor's `(batch, num_codebooks, seq_len)`
ids, pass row `config.codebook_index`. A fused model's graphs (`config.input_codebooks`) take the feature extractor's
ids as they are, `input_ids` int64 `(batch, num_codebooks, seq_len)`, and read their rows themselves; a fused
masked-LM's `logits` are `(batch, seq_len, len(input_codebooks), vocab_size)`. `model.onnx` returns `logits` float32
`(batch, num_labels)` for a classifier
(`(batch, seq_len, vocab_size)` for a masked-LM checkpoint); `encoder.onnx` returns `last_hidden_state` float32
`(batch, seq_len, hidden_size)`, 0 at padding. `OUT/config.json` is the checkpoint's config (labels, codebook row).

Running the model part without torch (`pip install onnxruntime numpy`):

    import json, numpy as np, onnxruntime
    session = onnxruntime.InferenceSession("OUT/model.onnx", providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    labels = json.load(open("OUT/config.json"))["id2label"]

The graph is traced with the batch kept padded (packing the real tokens has data-dependent shapes), attention
through `scaled_dot_product_attention` with the padding mask, and the rotary positions in real arithmetic (ONNX has
no complex tensors); the results are the eager model's.
"""

import argparse
import json
import os
import warnings

import numpy as np
import torch
from transformers import AutoConfig

from .configuration_audioformer import AudioFormerConfig
from .modeling_audioformer import AudioFormerForAudioClassification, AudioFormerForMaskedLM, AudioFormerModel


# The exported graphs agree with eager float32 to rounding (max |difference| / max(1, max |eager output|): ~1e-6 on
# tiny models, ~3e-5 at the paper's size); a wrong graph is off by orders of magnitude more.
TOLERANCE = 2e-4
OPSET = 18


class LogitsGraph(torch.nn.Module):
    """`(input_ids, attention_mask)` -> logits of a classifier or masked-LM."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class EncoderGraph(torch.nn.Module):
    """`(input_ids, attention_mask)` -> the encoder's last hidden states."""

    def __init__(self, encoder: AudioFormerModel):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def load_checkpoint(path: str):
    """The checkpoint's head model (classifier or masked-LM; None for a bare encoder) and its encoder, float32, eval,
    with batched SDPA attention (what the graph traces anyway)."""
    config = AutoConfig.from_pretrained(path)
    if not isinstance(config, AudioFormerConfig):
        raise ValueError(f"{path} is not an AudioFormer checkpoint (model_type {config.model_type!r}).")
    architecture = (config.architectures or ["AudioFormerModel"])[0]
    head_class = {
        "AudioFormerForAudioClassification": AudioFormerForAudioClassification,
        "AudioFormerForSequenceClassification": AudioFormerForAudioClassification,
        "AudioFormerForMaskedLM": AudioFormerForMaskedLM,
    }.get(architecture)
    kwargs = dict(attn_implementation="sdpa", dtype=torch.float32)
    if head_class is None:
        encoder = AudioFormerModel.from_pretrained(path, **kwargs).eval()
        return None, encoder
    model = head_class.from_pretrained(path, **kwargs).eval()
    return model, model.roformer


def example_batch(config: AudioFormerConfig, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random code ids `(B, max(lengths))` (a fused model: `(B, num_codebooks, max(lengths))`) wrapped as clips
    (`<BOA>` ... `<EOA>`, then `<PAD>`) and their mask `(B, max(lengths))`."""
    generator = torch.Generator().manual_seed(seed)
    rows = (config.num_codebooks,) if config.is_fused else ()
    input_ids = torch.full((len(lengths), *rows, max(lengths)), config.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        input_ids[i, ..., :n] = torch.randint(3, 1027, (*rows, n), generator=generator)
        input_ids[i, ..., 0], input_ids[i, ..., n - 1] = config.bos_token_id, config.eos_token_id
        attention_mask[i, :n] = 1
    return input_ids, attention_mask


def export_graph(module: torch.nn.Module, config: AudioFormerConfig, output_name: str, path: str, opset: int = OPSET):
    """Traces `module` on a padded batch and writes the ONNX graph with dynamic batch and length."""
    max_len = config.max_position_embeddings
    lengths = [min(max_len, 24), min(max_len, 17), 5]
    inputs = example_batch(config, lengths)
    batch, seq_len = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq_len", min=2, max=max_len)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on torchvision ops and deprecations
        torch.onnx.export(
            module,
            inputs,
            path,
            dynamo=True,
            input_names=["input_ids", "attention_mask"],
            output_names=[output_name],
            dynamic_shapes={
                "input_ids": {0: batch, inputs[0].dim() - 1: seq_len},  # (B, T), or a fused model's (B, K, T)
                "attention_mask": {0: batch, 1: seq_len},
            },
            opset_version=opset,
            optimize=True,
            external_data=False,
        )


def check_graph(module: torch.nn.Module, config: AudioFormerConfig, path: str, output_name: str) -> float:
    """Max |ONNX - eager| over a padded and an unpadded batch of sizes and lengths other than the traced ones;
    raises if above `TOLERANCE` times max(1, max |eager output|)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    max_len = config.max_position_embeddings
    worst, scale = 0.0, 1.0
    for lengths in ([min(max_len, 31), 9, min(max_len, 20), 2], [min(max_len, 13)] * 3):
        input_ids, attention_mask = example_batch(config, lengths, seed=len(lengths))
        with torch.no_grad():
            expected = module(input_ids, attention_mask).numpy()
        (got,) = session.run([output_name], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})
        if got.shape != expected.shape:
            raise RuntimeError(f"{path}: output shape {got.shape}, eager {expected.shape}.")
        worst = max(worst, float(np.abs(got - expected).max()))
        scale = max(scale, float(np.abs(expected).max()))
    if not worst <= TOLERANCE * scale:
        raise RuntimeError(f"{path} differs from the eager model by {worst:.3g} (> {TOLERANCE} x {scale:.3g}).")
    return worst


def export_onnx(checkpoint: str, output_dir: str, encoder: bool = True, check: bool = True) -> dict[str, float | None]:
    """Writes `output_dir/model.onnx` (if the checkpoint has a head), `output_dir/encoder.onnx` (if `encoder`) and
    `output_dir/config.json`. Returns `{file name: max |ONNX - eager|}` (None when not checked)."""
    model, base = load_checkpoint(checkpoint)
    config = base.config
    os.makedirs(output_dir, exist_ok=True)
    graphs = []
    if model is not None:
        graphs.append(("model.onnx", LogitsGraph(model), "logits"))
    if encoder or model is None:
        graphs.append(("encoder.onnx", EncoderGraph(base), "last_hidden_state"))
    report = {}
    for name, module, output_name in graphs:
        path = os.path.join(output_dir, name)
        export_graph(module, config, output_name, path)
        report[name] = check_graph(module, config, path, output_name) if check else None
    config_dict = (model or base).config.to_dict()
    with open(os.path.join(output_dir, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m audioformer.modeling_audioformer.export_onnx",
        description="Export an AudioFormer checkpoint to ONNX (codes -> logits, codes -> hidden states).",
    )
    parser.add_argument("checkpoint", help="an AudioFormer checkpoint folder")
    parser.add_argument("output_dir", help="where model.onnx, encoder.onnx and config.json are written")
    parser.add_argument("--no_encoder", action="store_true", help="skip encoder.onnx (codes -> hidden states)")
    parser.add_argument("--no_check", action="store_true", help="skip the onnxruntime check against eager")
    args = parser.parse_args(argv)
    report = export_onnx(args.checkpoint, args.output_dir, encoder=not args.no_encoder, check=not args.no_check)
    for name, difference in report.items():
        checked = "not checked" if difference is None else f"max |ONNX - eager| {difference:.2e}"
        print(f"{os.path.join(args.output_dir, name)}: {checked}")


if __name__ == "__main__":
    main()
