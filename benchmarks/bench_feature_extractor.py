"""
Speed of audio -> codes.

1. AudioFormerFeatureExtractor on 8 x 10 s clips (one batched codec call) against a per-clip loop over
   `EncodecModel.encode(clip, bandwidth=3.0)`, for the tiny seeded codec and a full-size randomly initialised
   EnCodec 24 kHz (default `EncodecConfig`, the architecture of facebook/encodec_24khz, codebooks seeded).
2. The pre-tokenizer (`python -m audioformer.tokenization.tokenize_dataset`) on a few hundred short clips with 1 and 2
   processes (`accelerate launch --multi_gpu --num_processes 2`; on a CPU-only machine the processes join a
   gloo group). Wall time includes process start-up.

    python benchmarks/bench_feature_extractor.py [--device cuda] [--num_clips 300] [--pretok_codec tiny|full]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch
from transformers import EncodecConfig, EncodecModel

from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import build_tiny_codec, seed_audio, seed_codebooks


def full_size_codec(seed=0) -> EncodecModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = EncodecModel(EncodecConfig()).eval()
    seed_codebooks(codec, seed=seed)
    return codec


def timed(fn):
    """Seconds one call of `fn` takes (device work included)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_feature_extractor(name, codec, device, repeats):
    clips = [c[0].numpy() for c in seed_audio(8, 240000, seed=1)]  # 8 x 10 s at 24 kHz
    fe = AudioFormerFeatureExtractor(codec_name_or_path=name, max_duration=10.0, device=device)
    fe.set_codec(codec)
    one_call = AudioFormerFeatureExtractor(
        codec_name_or_path=name, max_duration=10.0, device=device, codec_batch_size=len(clips)
    )
    one_call.set_codec(codec)

    def batched():
        return fe(clips, sampling_rate=24000)

    def batched_one_call():
        return one_call(clips, sampling_rate=24000)

    @torch.no_grad()
    def loop():
        return [codec.encode(torch.from_numpy(c)[None, None].to(device), bandwidth=3.0).audio_codes for c in clips]

    times = {"fe": [], "fe_one_call": [], "loop": []}
    fns = {"fe": batched, "fe_one_call": batched_one_call, "loop": loop}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):  # interleaved, so load from other processes hits all three alike
        for key, fn in fns.items():
            times[key].append(timed(fn))
    t = {k: min(v) for k, v in times.items()}
    ref = torch.stack([c[0, 0].cpu() for c in loop()])
    agree = {k: (fns[k]()["input_ids"][:, :, 1:-1] - 3 == ref).float().mean().item() for k in ("fe", "fe_one_call")}
    per_call = fe._clips_per_call(len(clips))
    print(
        f"[{name}] 8 x 10 s clips on {device}, clips/s (best of {repeats}):\n"
        f"  feature extractor, default ({per_call} clip(s) per codec call): {8 / t['fe']:8.2f}  "
        f"ratio vs loop {t['loop'] / t['fe']:.2f}x  codes = loop codes: {agree['fe']:.4%}\n"
        f"  feature extractor, whole batch in one codec call:  {8 / t['fe_one_call']:8.2f}  "
        f"ratio vs loop {t['loop'] / t['fe_one_call']:.2f}x  codes = loop codes: {agree['fe_one_call']:.4%}\n"
        f"  per-clip loop over EncodecModel.encode:           {8 / t['loop']:8.2f}"
    )
    return t


def write_clips(folder, num_clips):
    os.makedirs(os.path.join(folder, "train"))
    rows = []
    rng = np.random.default_rng(0)
    for i in range(num_clips):
        seconds = float(rng.uniform(0.5, 2.0))
        audio = seed_audio(1, int(seconds * 16000), 16000, seed=i)[0, 0].numpy() * 0.5
        sf.write(os.path.join(folder, "train", f"{i}.wav"), audio, 16000, subtype="PCM_16")
        rows.append({"file_name": f"{i}.wav", "label": i % 5})
    with open(os.path.join(folder, "train", "metadata.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def bench_pretokenizer(fe_dir, num_clips, tmp):
    data = os.path.join(tmp, "audio")
    write_clips(data, num_clips)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = [
        "-m",
        "audioformer.tokenization.tokenize_dataset",
        "--feature_extractor_name",
        fe_dir,
        "--data_dir",
        data,
        "--preprocessing_batch_size",
        "16",
        "--num_shards",
        "8",
    ]
    results = {}
    for procs in (1, 2):
        out = os.path.join(tmp, f"out{procs}")
        if procs == 1:
            cmd = [sys.executable, *args]
        else:
            cmd = [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--multi_gpu",
                "--num_processes",
                str(procs),
                "--num_machines",
                "1",
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                "--num_cpu_threads_per_process",
                str(max(1, os.cpu_count() // procs)),
                *args,
            ]
        start = time.perf_counter()
        proc = subprocess.run([*cmd, "--output_dir", out], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
            raise SystemExit(f"pre-tokenizer with {procs} process(es) failed")
        results[procs] = elapsed
        print(
            f"pre-tokenizer, {num_clips} clips (0.5-2 s, 16 kHz wav), {procs} process(es): {elapsed:6.1f} s wall "
            f"= {num_clips / elapsed:6.1f} clips/s"
        )
    print(f"pre-tokenizer speed-up 2 vs 1 process: {results[1] / results[2]:.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num_clips", type=int, default=300)
    p.add_argument("--pretok_codec", choices=["tiny", "full"], default="tiny")
    p.add_argument("--skip_full", action="store_true", help="skip the full-size codec in part 1")
    p.add_argument("--skip_pretokenizer", action="store_true")
    args = p.parse_args()
    print(
        f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs" + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else "")
    )

    with tempfile.TemporaryDirectory() as tmp:
        bench_feature_extractor("tiny", build_tiny_codec(0).to(args.device), args.device, args.repeats)
        if not args.skip_full:
            full = full_size_codec()
            full.save_pretrained(os.path.join(tmp, "full"))
            bench_feature_extractor("full-size", full.to(args.device), args.device, args.repeats)
        if not args.skip_pretokenizer:
            fe_dir = os.path.join(tmp, args.pretok_codec)
            if args.pretok_codec == "tiny":
                build_tiny_codec(0, save_directory=fe_dir)
            elif args.skip_full:
                full_size_codec().save_pretrained(fe_dir)
            AudioFormerFeatureExtractor(codec_name_or_path=fe_dir, max_duration=10.0).save_pretrained(fe_dir)
            bench_pretokenizer(fe_dir, args.num_clips, tmp)


if __name__ == "__main__":
    main()
