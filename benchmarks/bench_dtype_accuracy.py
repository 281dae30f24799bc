"""
What serving in bfloat16 or int8 costs in accuracy: a fine-tuned classifier's test mAP (multi-label) or accuracy
(single-label) on a pre-tokenized split, with the model in float32, bfloat16 and int8
(`long_audio.cast_for_inference`), side by side on the same codes, with max |logit - float32 logit| and how often
the top label equals float32's.

The codes are the split's stored codes, so only the model's precision changes (the codec stays float32 when serving:
docs/serving-speed.md). For the small real-audio evaluation (benchmarks/real_audio):

    python benchmarks/bench_dtype_accuracy.py --model real_audio/runs/ft1_.../checkpoint-N \
        --tokenized_dataset real_audio/codes/labelled --split test
"""

import argparse
import copy

import datasets
import numpy as np
import torch

from audioformer.modeling_audioformer import AudioFormerForAudioClassification
from audioformer.modeling_audioformer.long_audio import INFERENCE_DTYPES, bfloat16_is_native, cast_for_inference
from audioformer.training.collators import DataCollatorForCodeClassification
from audioformer.training.metrics import load_metric


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a classifier folder (run_classification.py's output)")
    parser.add_argument("--tokenized_dataset", required=True, help="a pre-tokenized DatasetDict folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--label_column_name", default="labels")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def targets_of(rows, label2id: dict, multi_label: bool) -> np.ndarray:
    """`(N, C)` multi-hot (multi-label) or `(N,)` class indices from label names or indices."""

    def index(label):
        return label2id[label] if isinstance(label, str) else int(label)

    if not multi_label:
        return np.array([index(r) for r in rows])
    multi_hot = np.zeros((len(rows), len(label2id)), dtype=np.float32)
    for i, row in enumerate(rows):
        multi_hot[i, [index(label) for label in row]] = 1.0
    return multi_hot


@torch.inference_mode()
def logits_of(model, split, batch_size: int) -> np.ndarray:
    collate = DataCollatorForCodeClassification(codebook_index=model.config.codebook_index, label_column="")
    out = []
    for start in range(0, len(split), batch_size):
        batch = collate([{"input_ids": ids} for ids in split[start : start + batch_size]["input_ids"]])
        out.append(model(**batch).logits.float().numpy())
    return np.concatenate(out)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = AudioFormerForAudioClassification.from_pretrained(args.model).eval()
    split = datasets.load_from_disk(args.tokenized_dataset)[args.split]
    labels = split[args.label_column_name]
    multi_label = model.config.problem_type == "multi_label_classification" or isinstance(labels[0], list)
    label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    targets = targets_of(labels, label2id, multi_label)
    dtypes = [d for d in INFERENCE_DTYPES if d != "bfloat16" or bfloat16_is_native(torch.device("cpu"))]

    results = {}
    for dtype in dtypes:
        logits = logits_of(cast_for_inference(copy.deepcopy(model), dtype), split, args.batch_size)
        if multi_label:
            score = load_metric("mean_average_precision").compute(predictions=logits, references=targets)["mAP"]
        else:
            score = float((logits.argmax(-1) == targets).mean())
        results[dtype] = (score, logits)

    metric = "mAP" if multi_label else "accuracy"
    reference_score, reference = results["float32"]
    print(f"{args.model}, {len(split)} clips of {args.tokenized_dataset} [{args.split}]\n")
    print(f"| dtype | {metric} | change | max abs logit diff | top-1 equal to float32 |")
    print("| --- | --- | --- | --- | --- |")
    for dtype, (score, logits) in results.items():
        same_top = float((logits.argmax(-1) == reference.argmax(-1)).mean())
        diff = float(np.abs(logits - reference).max())
        print(f"| {dtype} | {score:.4f} | {score - reference_score:+.4f} | {diff:.3g} | {same_top:.3f} |")
    return results


if __name__ == "__main__":
    main()
