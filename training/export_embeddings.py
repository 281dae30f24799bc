"""
Frozen features for scikit-learn probes: the pooled embedding of every clip of a pre-tokenized dataset.

    python -m audioformer.tokenization.tokenize_dataset --feature_extractor_name CKPT --data_dir data/esc50 \
        --output_dir codes
    python -m audioformer.training.export_embeddings --model_name_or_path CKPT --tokenized_dataset codes \
        --output_dir emb
    # several models (e.g. one per codebook, C1..C4) are concatenated, as in the HEAR module:
    python -m audioformer.training.export_embeddings --model_name_or_path c1 c2 c3 c4 \
        --tokenized_dataset codes --output_dir emb

The embedding of a clip is the mean of a layer's hidden states over its `<BOA>`..`<EOA>` positions: with the default
`--layer -1` the feature FT1's classifier reads (`pooled_output`, paper 4.2). Each model reads its own codebook row
(`config.codebook_index`). The output is a `datasets.DatasetDict` (`save_to_disk`) with the splits of the input, an
`embedding` column (float32, `sum of hidden sizes`) and every column of the input but `input_ids`:

    >>> train = datasets.load_from_disk("emb")["train"]
    >>> LogisticRegression().fit(train.with_format("numpy")[:]["embedding"], train["label"])
"""

import argparse
import logging
import os

import datasets
import numpy as np
import torch

from audioformer.modeling_audioformer import AudioFormerModel
from audioformer.modeling_audioformer.modeling_audioformer import codes_and_mask, masked_mean
from audioformer.tokenization.tokenize_dataset import load_tokenized_dataset, read_tokenization_info

from .collators import pad_code_rows


logger = logging.getLogger(__name__)


@torch.no_grad()
def pooled_embeddings(models, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """`(B, K, T)` ids of all codebooks and `(B, T)` mask -> `(B, sum of hidden sizes)`: per model, the masked mean
    of hidden layer `layer` (-1 = last; 0 = the embeddings) of its own codebook row (a fused model: rows),
    concatenated."""
    features = []
    for model in models:
        _, mask = codes_and_mask(input_ids, attention_mask, model.config)
        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=layer != -1)  # it picks its rows
        hidden = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        features.append(masked_mean(hidden, mask).float())
    return torch.cat(features, dim=-1)


def export_split(models, dataset: datasets.Dataset, batch_size: int = 32, layer: int = -1, max_length=None):
    """The split's embeddings `(N, D)` float32, in row order."""
    device = next(models[0].parameters()).device
    out = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        batch = pad_code_rows([{"input_ids": r} for r in rows["input_ids"]], max_length=max_length)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        out.append(pooled_embeddings(models, ids, mask, layer).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, sum(m.config.hidden_size for m in models)), np.float32)


def load_models(paths: list[str], device: str = "cpu") -> list[AudioFormerModel]:
    """Backbones of the checkpoints (an MLM or classification head is dropped), in eval mode; each must read its own
    codebook row."""
    models = [AudioFormerModel.from_pretrained(p).to(device).eval() for p in paths]
    rows = [m.config.read_codebooks for m in models]
    if len({tuple(r) for r in rows}) != len(rows):
        raise ValueError(
            f"The models read codebook rows {rows}: concatenating two models of the same row is a mistake."
        )
    return models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", nargs="+", required=True, help="One checkpoint, or one per codebook.")
    parser.add_argument(
        "--tokenized_dataset", required=True, help="Output of `python -m audioformer.tokenization.tokenize_dataset`."
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--splits", nargs="*", default=None, help="Splits to export (default: all).")
    parser.add_argument("--layer", type=int, default=-1, help="Hidden layer to pool (-1: last; 0: the embeddings).")
    parser.add_argument("--max_duration", type=float, default=None, help="Cut clips to this many seconds first.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    source = load_tokenized_dataset(args.tokenized_dataset)
    if isinstance(source, datasets.Dataset):
        source = datasets.DatasetDict({"train": source})
    splits = args.splits or list(source)
    missing = [s for s in splits if s not in source]
    if missing:
        raise ValueError(f"No split {missing} in {args.tokenized_dataset} (splits: {list(source)}).")
    models = load_models(args.model_name_or_path, args.device)
    max_length = None
    if args.max_duration is not None:
        fe = read_tokenization_info(args.tokenized_dataset)["feature_extractor"]
        max_length = int(np.ceil(args.max_duration * fe["sampling_rate"] / fe["hop_length"])) + 2
    out = datasets.DatasetDict()
    for split in splits:
        ds = source[split]
        embeddings = export_split(models, ds, args.batch_size, args.layer, max_length)
        keep = ds.remove_columns("input_ids")
        out[split] = keep.add_column("embedding", list(embeddings))
        logger.info("%s: %d clips -> embeddings of size %d", split, len(ds), embeddings.shape[-1])
    out.save_to_disk(args.output_dir)
    logger.info("wrote %s", os.path.abspath(args.output_dir))


if __name__ == "__main__":
    main()
