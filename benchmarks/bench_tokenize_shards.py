"""
Throughput of the streaming pre-tokenizer (WebDataset tar shards -> code shards) with 1 and 2 processes.

Writes `--num_shards` tar shards of `--clips_per_shard` synthesised clips (FLAC, 24 kHz, `--seconds` long, json
labels), then runs `python -m audioformer.tokenization.tokenize_dataset --data_files ...` in 1 process and under
`accelerate launch --multi_gpu --num_processes 2` (gloo on a CPU-only machine), each process with
`--threads` threads. The codec is a full-size EnCodec 24 kHz with random weights (`--codec full`, the compute of
facebook/encodec_24khz) or the tiny test codec (`--codec tiny`). Reports, from the run's own summary (index.json):
clips/s and real-time factor (processing time / audio time) for the whole job and per process, the scaling
efficiency (clips/s with 2 processes / 2 x clips/s with 1), and the wall time with process start-up.

    python benchmarks/bench_tokenize_shards.py [--codec full|tiny] [--num_shards 8] [--clips_per_shard 4] \
        [--seconds 10] [--threads 1] [--device cpu]
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import soundfile as sf
import torch
from transformers import EncodecConfig, EncodecModel

from audioformer.tokenization import AudioFormerFeatureExtractor
from audioformer.training.tiny_codec import build_tiny_feature_extractor, seed_audio, seed_codebooks


def write_shards(root, num_shards, clips_per_shard, seconds, sr=24000):
    for s in range(num_shards):
        with tarfile.open(os.path.join(root, f"train-{s:04d}.tar"), "w") as tar:
            for j in range(clips_per_shard):
                audio = seed_audio(1, int(seconds * sr), sr, seed=1000 * s + j)[:, 0].numpy().T * 0.5
                for name, data in (
                    (f"s{s}c{j}.flac", _flac(audio, sr)),
                    (f"s{s}c{j}.json", json.dumps({"labels": [j % 3]}).encode()),
                ):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def _flac(audio, sr) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, sr, format="FLAC")
    return out.getvalue()


def build_codec(kind, path, seconds):
    if kind == "tiny":
        build_tiny_feature_extractor(path, seed=0, max_duration=seconds)
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        codec = EncodecModel(EncodecConfig()).eval()
    seed_codebooks(codec, seed=0)
    codec.save_pretrained(os.path.join(path, "codec"))
    AudioFormerFeatureExtractor(codec_name_or_path=os.path.join(path, "codec"), max_duration=seconds).save_pretrained(
        path
    )


def run(num_processes, codec, pattern, out, threads, device, port):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    args = ["--feature_extractor_name", codec, "--data_files", pattern, "--output_dir", out]
    args += ["--label_column_name", "labels", "--preprocessing_batch_size", "4"]
    if device:
        args += ["--device", device]
    module = ["-m", "audioformer.tokenization.tokenize_dataset"]
    if num_processes == 1:
        cmd = [sys.executable, *module, *args]
    else:
        env["ACCELERATE_USE_CPU"] = "1" if device in (None, "cpu") else env.get("ACCELERATE_USE_CPU", "")
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes"]
        cmd += [str(num_processes), "--main_process_port", str(port), "--mixed_precision", "no"]
        cmd += ["--dynamo_backend", "no", *module, *args]
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stderr[-4000:])
    with open(os.path.join(out, "index.json")) as f:
        summary = json.load(f)["summary"]
    return dict(summary, wall_with_startup_s=wall)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", choices=["full", "tiny"], default="full")
    p.add_argument("--num_shards", type=int, default=8)
    p.add_argument("--clips_per_shard", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default=None)
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args()
    print("command:", " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]))
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "shards"))
        write_shards(os.path.join(tmp, "shards"), args.num_shards, args.clips_per_shard, args.seconds)
        codec = os.path.join(tmp, "codec")
        build_codec(args.codec, codec, args.seconds)
        pattern = os.path.join(tmp, "shards", f"train-{{0000..{args.num_shards - 1:04d}}}.tar")
        results = {}
        for n in (1, 2):
            results[n] = run(n, codec, pattern, os.path.join(tmp, f"out{n}"), args.threads, args.device, args.port)
        same = all(
            open(os.path.join(tmp, "out1", "train", f), "rb").read()
            == open(os.path.join(tmp, "out2", "train", f), "rb").read()
            for f in os.listdir(os.path.join(tmp, "out1", "train"))
            if f.endswith(".arrow")
        )
    clips = args.num_shards * args.clips_per_shard
    print(
        f"{clips} clips of {args.seconds:g} s in {args.num_shards} tar shards, {args.codec} codec, "
        f"{args.threads} thread(s) per process, torch {torch.__version__}"
    )
    print("| processes | clips/s (job) | clips/s per process | real-time factor (job) | wall with start-up (s) |")
    print("|---|---|---|---|---|")
    for n, r in results.items():
        print(
            f"| {n} | {r['clips_per_s']:.2f} | {r['clips_per_s'] / n:.2f} | {r['real_time_factor']:.4f} "
            f"| {r['wall_with_startup_s']:.1f} |"
        )
    efficiency = results[2]["clips_per_s"] / (2 * results[1]["clips_per_s"])
    print(f"scaling efficiency, 2 processes: {efficiency:.2f}; code shards of both runs byte-identical: {same}")


if __name__ == "__main__":
    main()
