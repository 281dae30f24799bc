"""The cost of reading all codebooks: a fused AudioFormer (`input_codebooks=[0, 1, 2, 3]`) vs the paper's
single-codebook one, at the paper's size (12 layers x 768, 12 heads) on the same padded batch, side by side in one run.

What differs between the two is only at the ends of the network: the fused embedding looks up 4 ids per frame and
sums them, and its masked-LM has 4 output heads (4 x 1028 logits per frame instead of 1028). The 12 layers between
are the same. Steps timed:

- `mlm`: a masked-LM training step (forward + backward of the loss over 25% masked frames; the fused model's labels
  `(B, T, 4)`, the single model's `(B, T)`), the pretraining cost;
- `classify`: a classification training step (mean pooling + linear head, cross-entropy), the fine-tuning cost;
- `infer`: one forward of the encoder under `torch.inference_mode()`, the serving cost.

Time: the two models alternate (A, B, A, B, ...) after a warm-up of each; the median of the repeats is reported as
wall-clock and process CPU time (all threads; less sensitive to other processes on the machine). Memory: a fresh
subprocess per (model, step) runs ONE step and reports peak resident set minus the resident set before it (the
step's activations, gradients and workspace; `peak_memory.py`), Linux only. Goal (issue 18): fused / single <= 1.1x.

    python benchmarks/bench_fused.py                                   # paper size
    python benchmarks/bench_fused.py --num_layers 2 --repeats 2        # quick look
"""

import argparse
import os
import sys

import torch
from interleaved_timing import medians, time_interleaved
from peak_memory import in_fresh_process, print_step_peak_bytes

from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
)


PAD_ID, MASK_ID = 1, 1027
MODELS = {"single": None, "fused": [0, 1, 2, 3]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_layers", type=int, default=12)
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--num_heads", type=int, default=12)
    parser.add_argument("--lengths", type=str, default="752,600,400,200", help="token counts of the clips")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each model and step (median)")
    parser.add_argument("--steps", type=str, default="mlm,classify,infer")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--_memory_of", type=str, default=None, help=argparse.SUPPRESS)  # internal: one measurement
    return parser.parse_args(argv)


def batch(args):
    """`(B, 4, T)` ids of every codebook, `(B, T)` mask, and the frames masked for MLM `(B, T)` (25%)."""
    generator = torch.Generator().manual_seed(args.seed)
    lengths = [int(x) for x in args.lengths.split(",")]
    ids = torch.full((len(lengths), 4, max(lengths)), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :, :n] = torch.randint(3, 1027, (4, n), generator=generator)
        ids[i, :, 0], ids[i, :, n - 1] = 0, 2
        mask[i, :n] = 1
    masked = (torch.rand(mask.shape, generator=generator) < 0.25) & mask.bool()
    masked[:, 0] = False
    return ids, mask, masked


def build(args, name, step):
    torch.manual_seed(args.seed)
    config = AudioFormerConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=4 * args.hidden_size,
        input_codebooks=MODELS[name],
        num_labels=10,
    )
    cls = AudioFormerForMaskedLM if step == "mlm" else AudioFormerForAudioClassification
    return cls(config)


def make_step(model, step, data):
    """A closure running one step of `step` on `data` with `model`."""
    ids, mask, masked = data
    fused = model.config.is_fused
    if step == "infer":
        model.eval()

        def run():
            with torch.inference_mode():
                model.roformer(input_ids=ids, attention_mask=mask)

        return run

    model.train()
    if step == "mlm":
        inputs = ids.masked_fill(masked[:, None], MASK_ID)
        if fused:  # whole frames masked in every codebook, labels (B, T, 4)
            labels = ids.transpose(1, 2).masked_fill(~masked[..., None], -100)
        else:  # the paper: codebook C1 only, labels (B, T)
            inputs, labels = inputs[:, 0], ids[:, 0].masked_fill(~masked, -100)
    else:
        inputs, labels = ids, torch.arange(ids.shape[0]) % 10

    def run():
        model(input_ids=inputs, attention_mask=mask, labels=labels).loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = batch(args)
    if args._memory_of:
        name, step = args._memory_of.split(":")
        return print_step_peak_bytes(make_step(build(args, name, step), step, data))

    print(
        f"{args.num_layers} layers x {args.hidden_size}, {args.num_heads} heads, batch lengths {args.lengths}; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; single = codebook C1 (the paper), fused = "
        f"C1+C2+C3+C4; median of {args.repeats} interleaved repeats"
    )
    print("command: python benchmarks/bench_fused.py " + " ".join(sys.argv[1:] if argv is None else argv))
    results = {}
    for step in args.steps.split(","):
        models = {name: build(args, name, step) for name in MODELS}
        wall, cpu = time_interleaved({name: make_step(m, step, data) for name, m in models.items()}, args.repeats)
        results[step] = medians(wall, cpu)
        del models
        if not args.skip_memory:
            for name in MODELS:
                argv_memory = [*(sys.argv[1:] if argv is None else argv), "--_memory_of", f"{name}:{step}"]
                results[step][name + "_mem"] = in_fresh_process(os.path.abspath(__file__), argv_memory)
        r = results[step]
        line = (
            f"{step:9s} single {r['single']:.3f} s | fused {r['fused']:.3f} s | ratio {r['fused'] / r['single']:.2f}x "
            f"(CPU time {r['single_cpu']:.3f} s vs {r['fused_cpu']:.3f} s, {r['fused_cpu'] / r['single_cpu']:.2f}x)"
        )
        if "single_mem" in r:
            line += (
                f" | peak extra RSS single {r['single_mem'] / 2**20:.0f} MiB, fused {r['fused_mem'] / 2**20:.0f} MiB, "
                f"ratio {r['fused_mem'] / max(r['single_mem'], 1):.2f}x"
            )
        print(line, flush=True)
    return results


if __name__ == "__main__":
    main()
