"""
Serving speed, audio -> labels, on CPU: one 10 s clip and a batch of 16 clips of 10 s, through

  (a) `naive`: transformers' pieces run as a user would string them together: `EncodecModel.encode` clip by clip,
      code ids wrapped by hand, transformers' `RoFormerModel` (eager attention, padding mask), mean pooling and the
      classifier with the same weights;
  (b) `float32`: today's path, `AudioFormerFeatureExtractor` + `AudioFormerForAudioClassification` in float32;
  (c) the new paths, same feature extractor (the codec stays float32), the model through
      `long_audio.cast_for_inference` (`bfloat16`, `int8`) or exported with `export_onnx` and run by onnxruntime
      (`onnx`).

The paper's model size (12 layers x 768, 12 heads; 527 AudioSet labels) and the architecture of EnCodec 24 kHz
(`EncodecConfig()`, random weights with seeded codebooks: the real ones cannot be downloaded here; the compute is
the same). Time: the codec calls and each path's model call are timed as separate steps, interleaved
(`interleaved_timing.py`: a warm-up of each, then `--repeats` rounds of all of them in turn) and the medians are
reported; a path's end-to-end time is its codec median plus its model median (the two run one after the other on
the same codes). Accuracy: max |logit - float32 logit| on the batch, and how often the top label (and the top 5)
equal float32's. The codec in bfloat16 is checked for code parity on the same clips (it is not used unless its
codes equal float32's).

    python benchmarks/bench_serving.py                                  # ~5 min on 2 loaded CPU cores
    python benchmarks/bench_serving.py --num_layers 2 --hidden_size 128 --num_heads 4 --repeats 1   # quick look
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from bench_feature_extractor import full_size_codec
from interleaved_timing import time_interleaved
from transformers import RoFormerConfig, RoFormerModel

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification
from audioformer.modeling_audioformer.export_onnx import export_onnx
from audioformer.modeling_audioformer.long_audio import OnnxAudioClassifier, cast_for_inference
from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import seed_audio


PATHS = ("naive", "float32", "bfloat16", "int8", "onnx")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_layers", type=int, default=12)
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--num_heads", type=int, default=12)
    parser.add_argument("--num_labels", type=int, default=527)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds of the batch (the clip gets 2x)")
    parser.add_argument("--paths", type=str, default=",".join(PATHS))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    return parser.parse_args(argv)


class NaiveClassifier(torch.nn.Module):
    """transformers' RoFormerModel (eager) + masked mean pooling + the classifier: (ids, mask) -> logits."""

    def __init__(self, model: AudioFormerForAudioClassification):
        super().__init__()
        sizes = {k: getattr(model.config, k) for k in ("vocab_size", "hidden_size", "num_hidden_layers")}
        config = RoFormerConfig(
            **sizes,
            num_attention_heads=model.config.num_attention_heads,
            intermediate_size=model.config.intermediate_size,
            max_position_embeddings=model.config.max_position_embeddings,
            pad_token_id=model.config.pad_token_id,
            attn_implementation="eager",
        )
        self.roformer = RoFormerModel(config).eval()
        result = self.roformer.load_state_dict(model.roformer.state_dict(), strict=True)
        assert not result.missing_keys and not result.unexpected_keys, result
        self.classifier = copy.deepcopy(model.classifier)

    def forward(self, input_ids, attention_mask):
        hidden = self.roformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        return self.classifier((hidden * mask).sum(1) / mask.sum(1))


@torch.no_grad()
def naive_codes(codec, clips: list[torch.Tensor], codebook: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip by clip `EncodecModel.encode(clip, bandwidth=3.0)`, codebook row -> `[BOA, c + 3, ..., EOA]`, padded."""
    rows = []
    for clip in clips:
        codes = codec.encode(clip[None, None], bandwidth=3.0).audio_codes[0, 0, codebook]  # (frames,)
        rows.append(F.pad(codes + 3, (1, 1), value=0).index_fill_(0, torch.tensor([codes.numel() + 1]), 2))
    length = max(r.numel() for r in rows)
    input_ids = torch.stack([F.pad(r, (0, length - r.numel()), value=1) for r in rows])
    attention_mask = torch.stack([(torch.arange(length) < r.numel()).long() for r in rows])
    return input_ids, attention_mask


def build_models(args, paths, work_dir):
    torch.manual_seed(0)
    config = AudioFormerConfig(
        hidden_size=args.hidden_size,
        embedding_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=4 * args.hidden_size,
        max_position_embeddings=1024,
        num_labels=args.num_labels,
        problem_type="multi_label_classification",
    )
    model = AudioFormerForAudioClassification(config).eval()
    torch.nn.init.normal_(model.classifier.weight, std=0.5)  # logits spread over a few units, like a trained head
    models = {"float32": model}
    if "naive" in paths:
        models["naive"] = NaiveClassifier(model)
    for dtype in ("bfloat16", "int8"):
        if dtype in paths:
            models[dtype] = cast_for_inference(copy.deepcopy(model), dtype)
    if "onnx" in paths:
        model.save_pretrained(os.path.join(work_dir, "checkpoint"))
        start = time.perf_counter()
        report = export_onnx(os.path.join(work_dir, "checkpoint"), os.path.join(work_dir, "onnx"), encoder=False)
        print(f"ONNX export: {time.perf_counter() - start:.0f} s, max |ONNX - eager| {report['model.onnx']:.1e}")
        models["onnx"] = OnnxAudioClassifier(os.path.join(work_dir, "onnx", "model.onnx"), model.config)
    return models


def model_step(name, model, features, naive_features, out):
    """A closure: one inference call of `model` on the batch's codes, its logits kept in `out[name]`."""

    def step():
        with torch.inference_mode():
            if name == "naive":
                logits = model(*naive_features)
            else:
                logits = model(input_ids=features["input_ids"], attention_mask=features["attention_mask"]).logits
        out[name] = logits.float()

    return step


def codec_parity(codec, fe, clips) -> list[float]:
    """Per codebook, the share of the codes a bfloat16 copy of the codec gives equal to float32's on `clips`."""
    reference = fe([c.numpy() for c in clips], sampling_rate=fe.sampling_rate)["input_ids"]
    fe_bf16 = copy.copy(fe)
    fe_bf16._codec = None
    fe_bf16.set_codec(copy.deepcopy(codec).to(torch.bfloat16))
    codes = fe_bf16([c.numpy() for c in clips], sampling_rate=fe.sampling_rate)["input_ids"]
    return (codes == reference).float().mean(dim=(0, 2)).tolist()


def run_case(label, clips, codec, fe, models, paths, repeats):
    out = {}
    features = fe([c.numpy() for c in clips], sampling_rate=fe.sampling_rate)
    naive_features = naive_codes(codec, clips)
    steps = {
        "codec": lambda: fe([c.numpy() for c in clips], sampling_rate=fe.sampling_rate),
        "naive_codec": lambda: naive_codes(codec, clips),
    }
    steps.update({name: model_step(name, models[name], features, naive_features, out) for name in paths})
    if "naive" not in paths:
        steps.pop("naive_codec")
    wall, _ = time_interleaved(steps, repeats)
    median = {name: statistics.median(t) for name, t in wall.items()}
    reference = out["float32"]
    rows = []
    for name in paths:
        codec_time = median["naive_codec" if name == "naive" else "codec"]
        logits = out[name]
        top1 = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
        k = min(5, reference.shape[-1])
        top5 = statistics.mean(
            len(set(a.tolist()) & set(b.tolist())) / k
            for a, b in zip(logits.topk(k).indices, reference.topk(k).indices)
        )
        rows.append(
            (name, codec_time, median[name], codec_time + median[name], (logits - reference).abs().max(), top1, top5)
        )
    base = {r[0]: r for r in rows}["float32"]
    naive = {r[0]: r for r in rows}.get("naive")
    print(f"\n{label}: median of {repeats} interleaved repeats (s); ratios: speed-up over float32 / over naive")
    print(
        f"{'path':9s} {'codec':>7s} {'model':>7s} {'total':>7s} {'e2e x fp32':>10s} {'model x fp32':>12s} "
        f"{'e2e x naive':>11s} {'model x naive':>13s} {'max|dlogit|':>11s} {'top1=':>6s} {'top5=':>6s}"
    )
    for name, codec_time, model_time, total, diff, top1, top5 in rows:
        versus_naive = f"{naive[3] / total:11.2f} {naive[2] / model_time:13.2f}" if naive else f"{'-':>11s} {'-':>13s}"
        print(
            f"{name:9s} {codec_time:7.3f} {model_time:7.3f} {total:7.3f} {base[3] / total:10.2f} "
            f"{base[2] / model_time:12.2f} {versus_naive} {diff:11.2e} {top1:6.2f} {top5:6.2f}"
        )


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown or "float32" not in paths:
        raise SystemExit(f"--paths: choose from {PATHS}, float32 included (the reference); got {args.paths!r}")
    print(
        f"{' '.join(sys.argv)}\n{args.num_layers} layers x {args.hidden_size}, {args.num_heads} heads, "
        f"{args.num_labels} labels; EnCodec 24 kHz architecture (random weights), 3 kbps; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    start = time.perf_counter()
    codec = full_size_codec()
    fe = AudioFormerFeatureExtractor(codec_name_or_path="encodec-24khz-random", max_duration=args.seconds)
    fe.set_codec(codec)
    samples = int(args.seconds * fe.sampling_rate)
    clips = list(seed_audio(args.batch_size, samples, seed=1)[:, 0])
    with tempfile.TemporaryDirectory() as work_dir:
        models = build_models(args, paths, work_dir)
        print(f"set-up: {time.perf_counter() - start:.0f} s")
        parity = codec_parity(codec, fe, clips)
        shares = ", ".join(f"C{k + 1} {100 * share:.1f}%" for k, share in enumerate(parity))
        print(f"codec in bfloat16: codes equal to float32's on the {args.batch_size} clips: {shares}")
        run_case(f"one {args.seconds:g} s clip", clips[:1], codec, fe, models, paths, 2 * args.repeats)
        run_case(
            f"batch of {args.batch_size} clips of {args.seconds:g} s", clips, codec, fe, models, paths, args.repeats
        )
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
