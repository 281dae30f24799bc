"""
Hostile requests to a served classifier: seconds and peak extra memory of each, and what it answered.

The classifier is a tiny AudioFormer (tiny seeded codec, 10 s windows, as published: carded, `handler.py`) loaded by
the Endpoints handler (`model_cards/handler.py`) and, for the upload case, the Space's server (`model_cards/space.py`,
`serve`). Each case runs in a fresh process, after the handler is loaded (`peak_memory.step_peak_bytes`: the peak
resident memory of the request minus the resident memory before it). The cases are those of issue 24; `--old`
adds the replaced polyphase resampler (`bench_resampling.old_resample_poly`) on the huge-rate request, for the
"before" numbers.

    python benchmarks/bench_hostile_requests.py [--old]
"""

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import soundfile as sf
import torch
from peak_memory import step_peak_bytes


SR = 16000


def clip(seconds: float, sampling_rate: int = SR, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def wav_bytes(wav: np.ndarray, sampling_rate: int = SR) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wav, sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def build_folder(path: str) -> str:
    """A carded tiny classifier with 10 s windows, as an Endpoint sees its repository."""
    import audioformer.tokenization  # noqa: F401
    from audioformer.model_cards.card import write_model_card
    from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification
    from audioformer.training.tiny_codec import build_tiny_feature_extractor

    labels = [f"label_{i}" for i in range(10)]
    config = AudioFormerConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=1024,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    AudioFormerForAudioClassification(config).save_pretrained(path)
    codec_dir = os.path.join(path, "codec")
    fe = build_tiny_feature_extractor(codec_dir, max_duration=10.0)
    fe.save_pretrained(path)
    write_model_card(path, task="audio-classification")
    return path


def request_cases() -> dict:
    """name -> (request body, what it is)."""
    ten_seconds = clip(10.0)
    return {
        "huge_sampling_rate": (
            {"inputs": clip(2000 / SR).tolist(), "parameters": {"sampling_rate": 1000003}},
            "2,000 samples declared at 1000003 Hz",
        ),
        "tiny_hop": (
            {
                "inputs": clip(2.0).tolist(),
                "parameters": {"sampling_rate": SR, "long_audio": "mean", "hop_duration": 1e-4},
            },
            "2 s, long_audio=mean, hop_duration=0.0001",
        ),
        "one_hour_mean": (
            {"inputs": np.zeros(3600 * SR, np.float32), "parameters": {"sampling_rate": SR, "long_audio": "mean"}},
            "1 hour (raw samples), long_audio=mean",
        ),
        "one_hour_wav": (
            {"inputs": wav_bytes(np.zeros(3600 * 8000, np.float32), 8000)},
            "1 hour WAV at 8 kHz (bytes)",
        ),
        "ten_minutes_mean": (
            {"inputs": np.zeros(600 * SR, np.float32), "parameters": {"sampling_rate": SR, "long_audio": "mean"}},
            "10 minutes (the limit), long_audio=mean: scored",
        ),
        "wav_without_ffmpeg": ({"inputs": base64.b64encode(wav_bytes(ten_seconds)).decode()}, "10 s WAV, base64"),
        "no_inputs": ({"audio": ten_seconds.tolist()}, 'no "inputs"'),
        "boolean_sampling_rate": (
            {"inputs": ten_seconds.tolist(), "parameters": {"sampling_rate": True}},
            "sampling_rate=true",
        ),
        "negative_top_k": (
            {"inputs": ten_seconds.tolist(), "parameters": {"sampling_rate": SR, "top_k": -1}},
            "top_k=-1",
        ),
        "unknown_parameter": (
            {"inputs": ten_seconds.tolist(), "parameters": {"sampling_rate": SR, "topk": 3}},
            "parameter topk",
        ),
    }


def run_case(folder: str, name: str) -> dict:
    """In a fresh process: loads the handler, then measures one request."""
    torch.set_num_threads(1)
    import importlib.util

    spec = importlib.util.spec_from_file_location("endpoint_handler", os.path.join(folder, "handler.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if name == "wav_without_ffmpeg":
        os.environ["PATH"] = tempfile.mkdtemp()  # a stock Endpoint image: no ffmpeg binary
    handler = module.EndpointHandler(folder)
    outcome = {}

    if name == "old_resampler_huge_rate":
        from bench_resampling import old_resample_poly

        def step():
            old_resample_poly(torch.from_numpy(clip(2000 / SR)).double(), 1000003, 24000)
            outcome["answer"] = "resampled (old filter)"

    elif name == "eight_clients":
        body = {"inputs": wav_bytes(clip(10.0)), "parameters": {"top_k": 3}}
        expected = handler(body)

        def client(results):
            for _ in range(3):
                results.append(handler(body) == expected)

        def step():
            results = []
            threads = [threading.Thread(target=client, args=(results,)) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            outcome["answer"] = f"{sum(results)} of {len(results)} answers equal the serial one"

    elif name == "codec_outside_folder":
        from audioformer.tokenization import AudioFormerFeatureExtractor

        hostile = tempfile.mkdtemp()
        config = json.load(open(os.path.join(folder, "preprocessor_config.json")))
        json.dump(
            {**config, "codec_name_or_path": "../../.."}, open(os.path.join(hostile, "preprocessor_config.json"), "w")
        )

        def step():
            try:
                AudioFormerFeatureExtractor.from_pretrained(hostile)
                outcome["answer"] = "loaded"
            except ValueError as err:
                outcome["answer"] = f"refused: {str(err)[:90]}..."

    else:
        body = request_cases()[name][0]

        def step():
            try:
                result = handler(body)
                outcome["answer"] = f"scored: {len(result)} labels"
            except (ValueError, ImportError) as err:
                outcome["answer"] = f"refused: {str(err)[:90]}..."

    def timed_step():
        start = time.perf_counter()
        step()
        outcome["seconds"] = time.perf_counter() - start

    peak = step_peak_bytes(timed_step)
    return {"case": name, "peak_mb": peak / 2**20, **outcome}


def upload_case(folder: str, megabytes: int) -> dict:
    """The Space's server (default limits) answering a POST of `megabytes` to /gradio_api/upload."""
    import socket
    import urllib.error
    import urllib.request

    from audioformer.model_cards import space

    uploads = tempfile.mkdtemp()
    os.environ["GRADIO_TEMP_DIR"] = uploads  # where the server would store the upload
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = space.build_demo(folder)
    original_launch = demo.launch
    demo.launch = lambda **kwargs: original_launch(prevent_thread_lock=True, quiet=True, **kwargs)
    space.serve(demo, "127.0.0.1", port)
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.wav"\r\n\r\n'.encode()
    body = head + bytes(megabytes * 2**20) + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, ConnectionError) as err:  # the server stopped reading and closed the connection
        status = f"none: {getattr(err, 'reason', err)}"
    seconds = time.perf_counter() - start
    demo.close()
    stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(uploads) for f in files)
    answer = f"HTTP {status}; {stored / 2**20:.1f} MB stored"
    return {"case": f"space_upload_{megabytes}mb", "seconds": seconds, "answer": answer}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", action="store_true", help="also the old resampler on the huge rate (~9 s, 2 GB)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.folder, args.case)))
        return
    names = list(request_cases()) + ["eight_clients", "codec_outside_folder"]
    if args.old:
        names.insert(1, "old_resampler_huge_rate")
    descriptions = {name: what for name, (_, what) in request_cases().items()}
    descriptions.update(
        eight_clients="8 threads x 3 requests of a 10 s WAV through one handler",
        codec_outside_folder="preprocessor_config.json with codec_name_or_path ../../..",
        old_resampler_huge_rate="the replaced resampler on 2,000 samples at 1000003 Hz",
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_folder(os.path.join(tmp, "model"))
        for name in names:
            out = subprocess.run(
                [sys.executable, __file__, "--case", name, "--folder", folder], capture_output=True, text=True
            )
            if out.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        rows.append({**upload_case(folder, 300), "peak_mb": float("nan")})
        print(json.dumps(rows[-1]), flush=True)
    descriptions["space_upload_300mb"] = "POST of 300 MB to the Space's /gradio_api/upload"
    print()
    print("| case | request | seconds | peak extra MB | answer |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['case']} | {descriptions[row['case']]} | {row['seconds']:.3f} | {row['peak_mb']:.0f} | "
            f"{row['answer']} |"
        )


if __name__ == "__main__":
    main()
