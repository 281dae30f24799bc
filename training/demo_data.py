"""
A synthesised, seeded DEMO dataset for the main job and the tests (nothing is downloaded).

Five classes of clearly distinct sounds: a low tone, a high tone, a rising chirp, a band of noise and a click
train. Every clip is generated from a seed, so the same arguments always give the same files. The sounds carry
random frequency, level, phase and onset jitter, so a model has something to learn, but they say nothing about
real audio: numbers from it demonstrate the pipeline, not the model.

    >>> from training.demo_data import write_demo_audiofolder
    >>> write_demo_audiofolder("demo_data/audio", multi_label=True, num_test=40)  # train/, validation/, test/

The folder is an audiofolder (`tokenization.audio_io.load_audio_dataset(data_dir=...)`): `train/`,
`validation/` and (with `num_test`) `test/`, each with 16-bit WAV files and a `metadata.jsonl` holding
`file_name`, `label` (the clip's main sound, a string: single-label) and `labels` (every sound in the clip, a list:
multi-label). Each split has its own seed, so no clip is repeated across splits.
"""

import json
import os
import shutil

import numpy as np
import torch

from .tiny_codec import build_tiny_feature_extractor


DEMO_CLASSES = ("low_tone", "high_tone", "chirp", "noise_band", "clicks")
DEMO_NOTE = (
    "SYNTHESISED DEMO DATA (training/demo_data.py): seeded tones, chirps, noise bands and click trains. "
    "Not real audio; metrics on it only show that the pipeline runs."
)


def synth_sound(name: str, num_samples: int, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One `(num_samples,)` float32 sound of class `name`, with seeded jitter, peak about 0.5."""
    t = np.arange(num_samples) / sampling_rate
    if name == "low_tone":
        sound = np.sin(2 * np.pi * rng.uniform(150, 300) * t + rng.uniform(0, 2 * np.pi))
    elif name == "high_tone":
        sound = np.sin(2 * np.pi * rng.uniform(2500, 4000) * t + rng.uniform(0, 2 * np.pi))
    elif name == "chirp":
        f0, f1 = rng.uniform(200, 500), rng.uniform(3000, 6000)
        duration = num_samples / sampling_rate
        sound = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration)))  # linear sweep f0 -> f1
    elif name == "noise_band":
        spectrum = np.fft.rfft(rng.standard_normal(num_samples))
        freqs = np.fft.rfftfreq(num_samples, 1 / sampling_rate)
        low = rng.uniform(800, 1500)
        spectrum[(freqs < low) | (freqs > 2 * low)] = 0
        sound = np.fft.irfft(spectrum, n=num_samples)
    elif name == "clicks":
        sound = np.zeros(num_samples)
        period = int(sampling_rate / rng.uniform(8, 20))
        for start in range(int(rng.integers(0, period)), num_samples, period):
            burst = min(48, num_samples - start)
            sound[start : start + burst] = rng.standard_normal(burst) * np.exp(-np.arange(burst) / 8)
    else:
        raise ValueError(f"Unknown demo class {name!r}; the classes are {DEMO_CLASSES}.")
    sound = sound / (np.abs(sound).max() + 1e-8)
    return (0.5 * sound).astype(np.float32)


def make_demo_clips(
    num_clips: int,
    seed: int = 0,
    multi_label: bool = False,
    duration: float = 1.0,
    sampling_rate: int = 24000,
    classes=DEMO_CLASSES,
) -> list[dict]:
    """
    Seeded clips; class `i % len(classes)` is the main sound of clip `i`, so the classes are balanced.

    With `multi_label`, half of the clips also hold a second, quieter sound of another class.

    Returns:
        list of dicts: `audio` float32 `(round(duration * sampling_rate),)`, `label` (str), `labels` (list of str).
    """
    rng = np.random.default_rng(seed)
    num_samples = int(round(duration * sampling_rate))
    clips = []
    for i in range(num_clips):
        main = classes[i % len(classes)]
        names = [main]
        if multi_label and rng.random() < 0.5:
            names.append(classes[(i + 1 + int(rng.integers(0, len(classes) - 1))) % len(classes)])
        audio = synth_sound(main, num_samples, sampling_rate, rng)
        for other in names[1:]:
            audio = audio + 0.5 * synth_sound(other, num_samples, sampling_rate, rng)
        audio = audio + 0.01 * rng.standard_normal(num_samples).astype(np.float32)
        clips.append({"audio": audio, "label": main, "labels": sorted(names)})
    return clips


def write_demo_audiofolder(
    output_dir: str,
    num_train: int = 60,
    num_validation: int = 20,
    seed: int = 0,
    multi_label: bool = False,
    duration: float = 1.0,
    sampling_rate: int = 24000,
    num_test: int = 0,
) -> str:
    """
    Writes the demo audiofolder (`train/`, `validation/`, `test/` if `num_test`, a `README.txt` saying what it is)
    and returns its path. Files already there with the same settings are kept (the folder is rewritten when the
    settings change).
    """
    import soundfile as sf

    settings = dict(
        num_train=num_train,
        num_validation=num_validation,
        seed=seed,
        multi_label=multi_label,
        duration=duration,
        sampling_rate=sampling_rate,
        classes=list(DEMO_CLASSES),
        num_test=num_test,
    )
    stamp = os.path.join(output_dir, "demo_settings.json")
    ours = os.path.isfile(stamp)  # a folder this function wrote: its splits may be replaced
    if ours:
        with open(stamp) as f:
            if json.load(f) == settings:
                return output_dir
    splits = [("train", num_train, seed), ("validation", num_validation, seed + 1000), ("test", num_test, seed + 2000)]
    for split, count, split_seed in splits:
        if count == 0:
            if ours and os.path.isdir(os.path.join(output_dir, split)):
                shutil.rmtree(os.path.join(output_dir, split))  # a split of earlier settings must not linger
            continue
        split_dir = os.path.join(output_dir, split)
        os.makedirs(split_dir, exist_ok=True)
        rows = []
        for i, clip in enumerate(make_demo_clips(count, split_seed, multi_label, duration, sampling_rate)):
            name = f"{split}_{i:04d}.wav"
            sf.write(os.path.join(split_dir, name), clip["audio"], sampling_rate, subtype="PCM_16")
            rows.append({"file_name": name, "label": clip["label"], "labels": clip["labels"]})
        with open(os.path.join(split_dir, "metadata.jsonl"), "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    with open(os.path.join(output_dir, "README.txt"), "w") as f:
        f.write(DEMO_NOTE + "\n")
    with open(stamp, "w") as f:
        json.dump(settings, f)
    return output_dir


def _is_float64_codec(codec_dir: str) -> bool:
    """Whether `codec_dir` holds the demo's feature extractor and its float64 codec (older demos wrote float32)."""
    if not os.path.isfile(os.path.join(codec_dir, "preprocessor_config.json")):
        return False
    with open(os.path.join(codec_dir, "config.json")) as f:
        return json.load(f).get("dtype") == "float64"


def demo_classification_flags(demo_dir: str = "demo_data", output_dir: str = "demo_output") -> list[str]:
    """
    Writes the demo of `run_classification.py` (the audiofolder and a tiny seeded codec, under `demo_dir`) and
    returns its flags: FT1 of a tiny model from scratch, single-label, about 2 minutes on 2 CPU cores. Early stopping
    and the best checkpoint are chosen on 20 validation clips; the reported accuracy is on 40 test clips, evaluated
    once at the end.
    """
    # Absolute, since the saved feature extractor keeps this path to find its codec. Float64, so that the codes, and
    # the demo's number, are the same with any thread count (float32 codes differ at near-ties).
    codec_dir = os.path.abspath(os.path.join(demo_dir, "tiny_codec"))
    if not _is_float64_codec(codec_dir):
        build_tiny_feature_extractor(codec_dir, seed=0, max_duration=1.0, dtype=torch.float64)
    audio_dir = write_demo_audiofolder(
        os.path.join(demo_dir, "audio"), num_train=60, num_validation=20, num_test=40, seed=0
    )
    return [
        "--data_dir",
        audio_dir,
        "--feature_extractor_name",
        codec_dir,
        "--label_column_name",
        "label",
        "--test_split_name",
        "test",
        "--tokenized_cache_dir",
        os.path.join(demo_dir, "tokenized"),
        "--config_overrides",
        "hidden_size=64,num_hidden_layers=2,num_attention_heads=4,intermediate_size=128,max_position_embeddings=128",
        "--output_dir",
        output_dir,
        "--do_train",
        "--do_eval",
        "--seed",
        "0",
        "--num_train_epochs",
        "15",
        "--learning_rate",
        "1e-3",
        "--warmup_steps",
        "8",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "20",
        "--eval_strategy",
        "epoch",
        "--save_strategy",
        "epoch",
        "--save_total_limit",
        "1",
        "--load_best_model_at_end",
        "--metric_for_best_model",
        "accuracy",
        "--early_stopping_patience",
        "5",
        "--logging_steps",
        "10",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--dataloader_num_workers",
        "0",
    ]


__all__ = [
    "DEMO_CLASSES",
    "DEMO_NOTE",
    "synth_sound",
    "make_demo_clips",
    "write_demo_audiofolder",
    "demo_classification_flags",
]
