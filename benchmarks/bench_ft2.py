"""FT2 vs FT1: the cost of a fine-tuning step with the frozen positive models (paper 3.3.2: "only a marginal time
cost increase").

Both variants run `AudioClassificationTrainer.compute_loss` on the same padded batch with the same anchor weights,
then backward and an AdamW step, on a model prepared by the trainer's accelerator (so with --bf16 the anchor's
forward runs under autocast, as in `Trainer.train`). FT2 adds `--num_positives` frozen models (the paper: C2..C4 = 3)
that the trainer runs without gradients, under the same autocast; MPC is computed on the pooled features.

Time: in one process, FT1 and FT2 steps alternate after a warm-up of each; the median of the repeats is reported
(wall-clock and process CPU time). Memory: a fresh subprocess per variant builds everything, resets the kernel's
peak-RSS counter, runs one step and reports peak RSS minus RSS before the step (Linux only). The weights of the
positive models are resident in both processes' FT2 runs before the reset, so the memory column is the step's extra
memory (activations, gradients, optimizer state), not the weights.

    python benchmarks/bench_ft2.py                            # paper size (12 x 768), fp32, slow on CPU
    python benchmarks/bench_ft2.py --num_layers 2 --bf16     # quick look, CPU bf16 autocast
"""

import argparse
import os
import sys
import tempfile

import torch
from interleaved_timing import medians, time_interleaved
from peak_memory import in_fresh_process, print_step_peak_bytes
from transformers import TrainingArguments

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification, AudioFormerModel
from audioformer.training.trainer import AudioClassificationTrainer


PAD_ID = 1
VARIANTS = ("ft1", "ft2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_layers", type=int, default=12)
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--num_heads", type=int, default=12)
    parser.add_argument("--num_labels", type=int, default=527)
    parser.add_argument("--num_positives", type=int, default=3, help="frozen positive models (paper: C2..C4)")
    parser.add_argument("--lengths", type=str, default="752,600,400,200", help="token counts of the batch's clips")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each variant (median)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the recipes' setting)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--_memory_of", type=str, default=None, help=argparse.SUPPRESS)  # internal: one variant
    return parser.parse_args(argv)


def config(args, **kwargs) -> AudioFormerConfig:
    return AudioFormerConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=4 * args.hidden_size,
        num_codebooks=args.num_positives + 1,
        **kwargs,
    )


def build(args, variant: str, output_dir: str):
    """A trainer (FT1, or FT2 with the positives), its prepared anchor, an AdamW optimizer and the batch."""
    torch.manual_seed(args.seed)
    anchor = AudioFormerForAudioClassification(
        config(args, num_labels=args.num_labels, problem_type="multi_label_classification")
    )
    positives = None
    if variant == "ft2":
        positives = [AudioFormerModel(config(args, codebook_index=k)) for k in range(1, args.num_positives + 1)]
    training_args = TrainingArguments(
        output_dir=output_dir, use_cpu=True, bf16=args.bf16, report_to=[], save_strategy="no", disable_tqdm=True
    )
    trainer = AudioClassificationTrainer(model=anchor, args=training_args, positive_models=positives)
    model = trainer.accelerator.prepare(trainer.model)  # as Trainer.train does: autocast around the forward
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    lengths = [int(x) for x in args.lengths.split(",")]
    input_ids = torch.full((len(lengths), args.num_positives + 1, max(lengths)), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        input_ids[i, :, :n] = torch.randint(3, 1027, (args.num_positives + 1, n))
        attention_mask[i, :n] = 1
    labels = (torch.rand(len(lengths), args.num_labels) < 0.01).float()
    labels[:, 0] = 1.0
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if variant == "ft1":  # FT1 reads its own codebook row only, as the collator gives it
        batch["input_ids"] = input_ids[:, 0]
    return trainer, model, optimizer, batch


def make_step(trainer, model, optimizer, batch):
    def step():
        loss = trainer.compute_loss(model, batch)
        trainer.accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def memory_of(args):
    """In a fresh process: peak RSS minus RSS before one step of one variant."""
    with tempfile.TemporaryDirectory() as tmp:
        print_step_peak_bytes(make_step(*build(args, args._memory_of, tmp)))


def measure_memory(variant):
    return in_fresh_process(os.path.abspath(__file__), sys.argv[1:] + ["--_memory_of", variant])


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory_of:
        return memory_of(args)
    print(
        f"{args.num_layers} layers x {args.hidden_size}, {args.num_heads} heads, {args.num_labels} labels, batch "
        f"lengths {args.lengths}; FT2 with {args.num_positives} frozen positives; "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}; torch {torch.__version__} on CPU, {torch.get_num_threads()} "
        f"threads; median of {args.repeats} interleaved repeats",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        steps = {variant: make_step(*build(args, variant, os.path.join(tmp, variant))) for variant in VARIANTS}
        times, cpu_times = time_interleaved(steps, args.repeats)
        del steps
    result = medians(times, cpu_times)
    for v in VARIANTS:
        print(f"  {v} wall: " + " ".join(f"{t:.3f}" for t in times[v]) + " s", flush=True)
    line = (
        f"training step  FT1 {result['ft1']:.3f} s | FT2 {result['ft2']:.3f} s | "
        f"FT2/FT1 {result['ft2'] / result['ft1']:.2f}x "
        f"(process CPU time {result['ft1_cpu']:.3f} s vs {result['ft2_cpu']:.3f} s, "
        f"{result['ft2_cpu'] / result['ft1_cpu']:.2f}x)"
    )
    if not args.skip_memory:
        for v in VARIANTS:
            result[v + "_mem"] = measure_memory(v)
        line += (
            f" | peak extra RSS FT1 {result['ft1_mem'] / 2**20:.0f} MiB, FT2 {result['ft2_mem'] / 2**20:.0f} MiB, "
            f"{result['ft2_mem'] / result['ft1_mem']:.2f}x"
        )
    print(line)
    return result


if __name__ == "__main__":
    main()
