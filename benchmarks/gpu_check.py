"""
A GPU check, for the day a CUDA device is there: numerics and speed of AudioFormer on the GPU, in one table, in
under 5 minutes.

1. Parity with the CPU model (same weights, float32, eager, a padded batch of 752/600/400/200 tokens): on CUDA with
   `sdpa` and `eager` attention, in float32 (TF32 off) and under bfloat16 autocast; encoder hidden states and a
   classifier's logits.
2. A few bfloat16-autocast training steps (AdamW) of both scripts' models: `run_mlm.py`'s masked-LM (15% masked) and
   `run_classification.py`'s classifier (LSEP, multi-label); the loss must stay finite and fall.
3. Training throughput at the paper's size (12 x 768, 752 tokens per clip), batch as large as fits (tried from
   `--max_batch` down, halving on out-of-memory): tokens/s and model FLOP utilisation, MFU = achieved model FLOP/s /
   the GPU's peak dense bf16 FLOP/s (a table of known GPUs, or `--peak_tflops`). Model FLOPs per trained token:
   6 x (non-embedding parameters) + 12 x layers x hidden x seq_len (attention scores and values, forward and
   backward); recomputation and the MLM head are not counted.
4. Inference clips/s of the classifier (bf16 autocast and float32, `sdpa`), and the codec's clips/s (EnCodec 24 kHz
   architecture, random weights with seeded codebooks, 10 s clips, through `AudioFormerFeatureExtractor`).

Without CUDA it says so and exits 0. `--device cpu` runs the same steps on the CPU (with small `--num_layers` /
`--hidden_size`: the test of this script).

    python benchmarks/gpu_check.py                      # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --num_layers 1 --hidden_size 32 --num_heads 2 --seq_len 40 \
        --max_batch 4 --codec tiny                      # the logic, on a CPU, in seconds
"""

import argparse
import copy
import math
import sys
import time

import torch

from audioformer.modeling_audioformer import (
    AudioFormerConfig,
    AudioFormerForAudioClassification,
    AudioFormerForMaskedLM,
    AudioFormerModel,
)


# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, matched on the device name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default; exits 0 without it) or cpu (for testing)")
    parser.add_argument("--num_layers", type=int, default=12)
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--num_heads", type=int, default=12)
    parser.add_argument("--seq_len", type=int, default=752, help="tokens per clip (10 s: 750 codes + BOA + EOA)")
    parser.add_argument("--max_batch", type=int, default=256, help="largest training batch tried")
    parser.add_argument("--train_steps", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--peak_tflops", type=float, default=None, help="the GPU's dense bf16 peak (default: table)")
    parser.add_argument(
        "--codec", choices=("full", "tiny"), default="full", help="EnCodec 24 kHz size or the tiny one"
    )
    parser.add_argument("--budget_s", type=float, default=270.0, help="sections are skipped past this many seconds")
    return parser.parse_args(argv)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def config_of(args, **kwargs) -> AudioFormerConfig:
    return AudioFormerConfig(
        hidden_size=args.hidden_size,
        embedding_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=4 * args.hidden_size,
        max_position_embeddings=max(1024, args.seq_len),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **kwargs,
    )


def padded_batch(lengths, seq_len, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.ones(len(lengths), seq_len, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(3, 1027, (n,), generator=generator)
        input_ids[i, 0], input_ids[i, n - 1] = 0, 2
        attention_mask[i, :n] = 1
    return input_ids.to(device), attention_mask.to(device)


def relative_error(got: torch.Tensor, reference: torch.Tensor) -> float:
    """max |got - reference| / max |reference|."""
    return float((got.float().cpu() - reference).abs().max() / reference.abs().max().clamp(min=1e-12))


@torch.no_grad()
def parity(args, device) -> list[tuple[str, str, str]]:
    """CPU float32 eager against `device` with sdpa / eager, float32 / bf16 autocast: rows (check, value, verdict)."""
    torch.manual_seed(0)
    cpu = AudioFormerForAudioClassification(config_of(args, num_labels=10, attn_implementation="eager")).eval()
    lengths = [args.seq_len, int(args.seq_len * 0.8), args.seq_len // 2, max(2, args.seq_len // 4)]
    ids, mask = padded_batch(lengths, args.seq_len, "cpu")
    reference = cpu(ids, attention_mask=mask, output_hidden_states=True)
    ref_hidden, ref_logits = reference.hidden_states[-1], reference.logits
    rows = []
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        for attention in ("sdpa", "eager"):
            model = copy.deepcopy(cpu).to(device)
            model.set_attn_implementation(attention)
            inputs = ids.to(device), mask.to(device)
            for precision, tolerance in (("float32", 1e-4), ("bf16 autocast", 5e-2)):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision != "float32"):
                    out = model(inputs[0], attention_mask=inputs[1], output_hidden_states=True)
                for what, got, ref in (
                    ("hidden", out.hidden_states[-1], ref_hidden),
                    ("logits", out.logits, ref_logits),
                ):
                    error = relative_error(got, ref)
                    verdict = "ok" if error <= tolerance else f"FAIL (> {tolerance:g})"
                    rows.append((f"parity {attention} {precision} {what}", f"rel. err {error:.1e}", verdict))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return rows


def mask_tokens(input_ids, attention_mask, generator):
    """15% of the real code positions masked (`<MASK>` = 1027), labels -100 elsewhere, as run_mlm's collator."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < 0.15).to(input_ids.device) & attention_mask.bool()
    labels = torch.where(chosen, input_ids, -100)
    return torch.where(chosen, 1027, input_ids), labels


def train_steps(model, batch_size, args, device, steps, kind, seed=0):
    """`steps` bf16-autocast AdamW steps on fresh random clips of `seq_len` tokens; returns (losses, seconds of the
    steps after the first)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(seed)
    ids, mask = padded_batch([args.seq_len] * batch_size, args.seq_len, device, seed=seed)
    if kind == "mlm":
        inputs, labels = mask_tokens(ids, mask, generator)
    else:
        inputs = ids
        labels = (torch.rand(batch_size, model.config.num_labels, generator=generator) < 0.2).float().to(device)
    losses, start = [], None
    model.train()
    for step in range(steps + 1):
        if step == 1:
            sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(inputs, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    sync(device)
    return losses, time.perf_counter() - start


def model_flops_per_token(config: AudioFormerConfig, seq_len: int) -> float:
    encoder = AudioFormerModel(config)
    non_embedding = sum(
        p.numel() for n, p in encoder.named_parameters() if "embeddings" not in n and "embed_positions" not in n
    )
    return 6.0 * non_embedding + 12.0 * config.num_hidden_layers * config.hidden_size * seq_len


def peak_tflops(args, device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def largest_training_batch(args, device) -> tuple[int, float]:
    """The largest batch (from --max_batch, halving) whose training step fits; (batch, tokens/s over a few steps)."""
    batch = args.max_batch
    while batch >= 1:
        torch.manual_seed(0)
        model = AudioFormerForMaskedLM(config_of(args, attn_implementation="sdpa")).to(device)
        try:
            _, seconds = train_steps(model, batch, args, device, steps=max(2, args.train_steps // 2), kind="mlm")
            return batch, batch * args.seq_len * max(2, args.train_steps // 2) / seconds
        except torch.cuda.OutOfMemoryError:
            batch //= 2
        finally:
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    raise RuntimeError("Not even a batch of 1 fits.")


@torch.no_grad()
def inference_clips_per_second(args, device, autocast: bool, batch: int = 64, repeats: int = 3) -> float:
    torch.manual_seed(0)
    model = AudioFormerForAudioClassification(config_of(args, num_labels=527, attn_implementation="sdpa"))
    model = model.to(device).eval()
    ids, mask = padded_batch([args.seq_len] * batch, args.seq_len, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        model(ids, attention_mask=mask)
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(ids, attention_mask=mask)
        sync(device)
    return batch * repeats / (time.perf_counter() - start)


def codec_clips_per_second(args, device, batch: int = 16, repeats: int = 2) -> float:
    from audioformer.tokenization import AudioFormerFeatureExtractor
    from audioformer.training.tiny_codec import build_tiny_codec, seed_audio

    if args.codec == "full":
        from bench_feature_extractor import full_size_codec

        codec, seconds = full_size_codec(), 10.0
    else:
        codec, seconds = build_tiny_codec(), 1.0
    fe = AudioFormerFeatureExtractor(codec_name_or_path="codec", max_duration=seconds)
    fe.set_codec(codec)
    fe.to(device)
    clips = [c[0].numpy() for c in seed_audio(batch, int(seconds * fe.sampling_rate), seed=1)]
    fe(clips, sampling_rate=fe.sampling_rate)
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fe(clips, sampling_rate=fe.sampling_rate)
    sync(device)
    return batch * repeats / (time.perf_counter() - start)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False): nothing to check.")
        return 0
    device = torch.device(args.device)
    start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = [("device", f"{name}, torch {torch.__version__}", "")]

    def in_budget(section):
        if time.perf_counter() - start < args.budget_s:
            return True
        rows.append((section, "skipped", f"past --budget_s {args.budget_s:g}"))
        return False

    rows += parity(args, device)
    for kind, model_class, extra in (
        ("mlm", AudioFormerForMaskedLM, {}),
        (
            "classifier",
            AudioFormerForAudioClassification,
            {"num_labels": 527, "problem_type": "multi_label_classification"},
        ),
    ):
        if not in_budget(f"train {kind}"):
            continue
        torch.manual_seed(0)
        model = model_class(config_of(args, attn_implementation="sdpa", **extra)).to(device)
        losses, _ = train_steps(model, 4, args, device, steps=args.train_steps, kind=kind)
        ok = all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
        rows.append(
            (
                f"train {kind} bf16, {len(losses)} steps",
                f"loss {losses[0]:.3f} -> {losses[-1]:.3f}",
                "ok" if ok else "FAIL",
            )
        )
        del model
    if in_budget("training throughput"):
        batch, tokens_per_second = largest_training_batch(args, device)
        flops = model_flops_per_token(config_of(args), args.seq_len) * tokens_per_second
        peak = peak_tflops(args, device)
        mfu = f"MFU {100 * flops / (peak * 1e12):.1f}% of {peak:g} TFLOP/s" if peak else "MFU: peak unknown"
        rows.append((f"train MLM bf16, batch {batch} x {args.seq_len}", f"{tokens_per_second:,.0f} tokens/s", mfu))
        rows.append(("  model FLOP/s", f"{flops / 1e12:.2f} TFLOP/s", ""))
    for autocast in (True, False):
        label = "bf16 autocast" if autocast else "float32"
        if in_budget(f"inference {label}"):
            rows.append(
                (
                    f"inference {label}, batch 64",
                    f"{inference_clips_per_second(args, device, autocast):,.1f} clips/s",
                    "",
                )
            )
    if in_budget("codec"):
        rows.append(
            (f"codec ({args.codec}) float32, batch 16", f"{codec_clips_per_second(args, device):,.1f} clips/s", "")
        )

    width = max(len(r[0]) for r in rows)
    print(f"\n{' '.join(sys.argv)}\n{args.num_layers} layers x {args.hidden_size}, {args.seq_len} tokens per clip")
    for check, value, verdict in rows:
        print(f"{check:<{width}}  {value:<28}  {verdict}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 1 if any(r[2].startswith("FAIL") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
