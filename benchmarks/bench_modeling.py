"""AudioFormerModel vs transformers' RoFormerModel (eager): one training step and one inference forward; with
`--compile`, also AudioFormer under `torch.compile` (default mode) in the same run.

Both models get the same weights (RoFormer loads AudioFormer's state dict with no missing keys) and the same padded
batch: by default the paper's size (12 layers x 768, 12 heads, 752 tokens) and 4 clips of 752, 600, 400, 200 tokens.

Time: in one process, the two models alternate (A, B, A, B, ...) after a warm-up of each, and the median of the
repeats is reported, as wall-clock time and as process CPU time (all threads; less sensitive to other processes
sharing the cores, which inflate wall-clock times of both models). A training step (train mode, dropout 0.1) is
forward + backward of a loss over the real positions (+ an AdamW step with --optimizer_step); inference is one forward
under `torch.inference_mode()`.

Memory: a fresh subprocess per (model, mode) builds the models and the batch, drops the other model, resets the
kernel's peak-RSS counter (`echo 5 > /proc/self/clear_refs`), runs ONE step and reports the peak resident set
(VmHWM) minus the resident set before the step: the extra memory the step needed (activations, gradients,
workspace). Linux only. Time and memory are measured separately so that neither disturbs the other.

    python benchmarks/bench_modeling.py                       # paper size, ~9 min on 2 CPU cores
    python benchmarks/bench_modeling.py --num_layers 2 --repeats 2   # quick look
    python benchmarks/bench_modeling.py --num_layers 2 --compile --skip_memory   # + torch.compile
"""

import argparse
import os
import sys

import torch
from interleaved_timing import medians, time_interleaved
from peak_memory import in_fresh_process, print_step_peak_bytes
from transformers import RoFormerConfig, RoFormerModel

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerModel


PAD_ID = 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_layers", type=int, default=12)
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--num_heads", type=int, default=12)
    parser.add_argument("--intermediate_size", type=int, default=None, help="default: 4 x hidden_size")
    parser.add_argument(
        "--lengths", type=str, default="752,600,400,200", help="token counts of the clips in the batch"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each model and mode (median)")
    parser.add_argument("--modes", type=str, default="train,infer")
    parser.add_argument("--optimizer_step", action="store_true", help="also run an AdamW step in the training step")
    parser.add_argument(
        "--attn_implementation", type=str, default=None, help="AudioFormer's attention (default: the model's choice)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile(AudioFormer) (default mode; not timed for memory)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    # internal: run one memory measurement in this (fresh) process and print it as JSON
    parser.add_argument("--_memory_of", type=str, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build(args):
    """Returns {"audioformer": model, "roformer": model} with the same weights, and the batch."""
    torch.manual_seed(args.seed)
    sizes = dict(
        vocab_size=1028,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=args.intermediate_size or 4 * args.hidden_size,
        max_position_embeddings=1536,
        pad_token_id=PAD_ID,
    )
    audioformer = AudioFormerModel(AudioFormerConfig(**sizes, attn_implementation=args.attn_implementation))
    roformer = RoFormerModel(RoFormerConfig(**sizes, attn_implementation="eager"))
    result = roformer.load_state_dict(audioformer.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result

    lengths = [int(x) for x in args.lengths.split(",")]
    max_len = max(lengths)
    input_ids = torch.full((len(lengths), max_len), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros(len(lengths), max_len, dtype=torch.long)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(3, 1027, (n,))
        attention_mask[i, :n] = 1
    models = {"audioformer": audioformer, "roformer": roformer}
    if args.compile:  # the same module (same weights), compiled: its graph keeps the batch padded
        models["compiled"] = torch.compile(audioformer)
    return models, (input_ids, attention_mask)


def make_step(model, mode, batch, optimizer_step):
    """A closure running one training step or one inference forward of `model` on `batch`."""
    input_ids, attention_mask = batch
    mask = attention_mask.unsqueeze(-1).float()
    if mode == "infer":
        model.eval()

        def step():
            with torch.inference_mode():
                model(input_ids=input_ids, attention_mask=attention_mask)

        return step

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5) if optimizer_step else None

    def step():
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        loss = (hidden * mask).square().sum() / mask.sum()  # real positions only: what both models agree on
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)

    return step


def memory_of(args):
    """In a fresh process: peak RSS minus RSS before one step of one model in one mode."""
    name, mode = args._memory_of.split(":")
    models, batch = build(args)
    model = models[name]
    del models
    print_step_peak_bytes(make_step(model, mode, batch, args.optimizer_step))


def measure_memory(args, name, mode):
    argv = [a for a in sys.argv[1:] if a != "--compile"] + ["--_memory_of", f"{name}:{mode}"]
    return in_fresh_process(os.path.abspath(__file__), argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory_of:
        return memory_of(args)

    models, batch = build(args)
    lengths = args.lengths
    print(
        f"{args.num_layers} layers x {args.hidden_size}, {args.num_heads} heads, batch lengths {lengths}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; AudioFormer attention "
        f"{models['audioformer'].config._attn_implementation}{' (and torch.compile)' if args.compile else ''}; "
        f"RoFormer eager; median of {args.repeats} interleaved repeats"
    )
    results = {}
    for mode in args.modes.split(","):
        steps = {name: make_step(model, mode, batch, args.optimizer_step) for name, model in models.items()}
        times, cpu_times = time_interleaved(steps, args.repeats)
        results[mode] = medians(times, cpu_times)
        for name, t in times.items():
            print(
                f"  {mode} {name} wall: "
                + " ".join(f"{x:.3f}" for x in t)
                + " s; cpu: "
                + " ".join(f"{x:.3f}" for x in cpu_times[name])
                + " s",
                flush=True,
            )
        if not args.skip_memory:
            for name in ("audioformer", "roformer"):
                results[mode][name + "_mem"] = measure_memory(args, name, mode)

    for mode, r in results.items():
        label = "training step" if mode == "train" else "inference"
        line = (
            f"{label:14s} AudioFormer {r['audioformer']:.3f} s | RoFormer {r['roformer']:.3f} s | "
            f"speed-up {r['roformer'] / r['audioformer']:.2f}x (process CPU time: {r['audioformer_cpu']:.3f} s vs "
            f"{r['roformer_cpu']:.3f} s, {r['roformer_cpu'] / r['audioformer_cpu']:.2f}x)"
        )
        if "compiled" in r:
            line += (
                f" | torch.compile {r['compiled']:.3f} s: {r['roformer'] / r['compiled']:.2f}x RoFormer, "
                f"{r['audioformer'] / r['compiled']:.2f}x eager AudioFormer (CPU time {r['compiled_cpu']:.3f} s)"
            )
        if "audioformer_mem" in r:
            line += (
                f" | peak extra RSS AudioFormer {r['audioformer_mem'] / 2**20:.0f} MiB, "
                f"RoFormer {r['roformer_mem'] / 2**20:.0f} MiB"
            )
        print(line)
    return results


if __name__ == "__main__":
    main()
