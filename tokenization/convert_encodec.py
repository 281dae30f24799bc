"""
Convert a checkpoint of Meta's `encodec` package (e.g. `encodec_24khz-d7cc33bc.th`) to transformers'
`EncodecModel` (transformers 5.x no longer ships its conversion script).

    python -m audioformer.tokenization.convert_encodec --checkpoint encodec_24khz-d7cc33bc.th \
        --output_dir encodec_24khz_hf

The renames are few: `encoder.model.` -> `encoder.layers.`, `.conv.conv.` / `.convtr.convtr.` -> `.conv.`,
weight-norm `weight_g` / `weight_v` -> `parametrizations.weight.original0` / `original1`, and
`quantizer.vq.layers.N._codebook.` -> `quantizer.layers.N.codebook.`.
"""

import argparse
import re

import torch
from transformers import EncodecConfig, EncodecModel


def convert_encodec_state_dict(state_dict: dict) -> dict:
    """Meta `encodec` state dict -> transformers `EncodecModel` state dict (same tensors, new names)."""
    out = {}
    for key, value in state_dict.items():
        new = re.sub(r"^(encoder|decoder)\.model\.", r"\1.layers.", key)
        new = new.replace(".conv.conv.", ".conv.").replace(".convtr.convtr.", ".conv.")
        new = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", new)
        new = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", new)
        new = re.sub(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook.", new)
        out[new] = value
    return out


def convert_checkpoint(checkpoint_path: str, output_dir: str, config: EncodecConfig | None = None) -> EncodecModel:
    """Loads a Meta `.th` state dict (tensors only, `weights_only=True`) and saves a transformers folder."""
    state_dict = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model = EncodecModel(config or EncodecConfig())
    model.load_state_dict(convert_encodec_state_dict(state_dict), strict=True)
    model.eval().save_pretrained(output_dir)
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="Meta encodec .th state dict (24 kHz model)")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    convert_checkpoint(args.checkpoint, args.output_dir)
