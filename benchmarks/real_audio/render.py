"""
Renders the real-audio evaluation set from sources on Debian's package registry: instruments played by fluidsynth
with the FluidR3 General MIDI soundfont (`fluid-soundfont-gm`), speech by espeak-ng voices, noises and synthetic
tones by sox. Each clip is a mix of 1 to 3 sources of different classes (multi-label, like AudioSet and FSD50K).

    apt-get install espeak-ng fluidsynth fluid-soundfont-gm sox
    python benchmarks/real_audio/render.py --output_dir real_audio/audio      # called by run.py

Writes audiofolders (24 kHz mono 16-bit wav, metadata.jsonl with `file_name` and `labels`, a list of class names):
`labelled/{train,validation,test}` and `pretrain/train` (unlabelled clips plus the labelled training clips, for MLM
pretraining). Every source segment is used by one clip only, so no recording is shared between splits. Seeded: the
same arguments give the same audio (given the same package versions).
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import tempfile

import numpy as np
import soundfile as sf


SAMPLE_RATE = 24000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# General MIDI program ranges of the instrument families (0-based programs).
INSTRUMENTS = {
    "piano": range(0, 8),
    "chromatic_percussion": range(8, 16),
    "organ": range(16, 24),
    "guitar": range(24, 32),
    "bass": range(32, 40),
    "strings": range(40, 52),
    "brass": range(56, 64),
    "reed": range(64, 72),
    "pipe": range(72, 80),
    "synth": range(80, 96),
}
NOTE_RANGES = {"bass": (28, 55), "piano": (40, 88), "pipe": (60, 90), "brass": (45, 80), "reed": (50, 82)}
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)
CLASSES = [*INSTRUMENTS, "drums", "speech", "noise", "synthetic_tone"]
VOICES = ("en", "en-us", "en-gb-scotland", "fr", "de", "es", "it", "pt", "nl", "pl", "sv", "ru")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "croak")
WORDS = (
    "the a river stone morning light window seven orange quietly under mountain paper music garden city over "
    "yellow dance simple reason forty follow small question answer bright every winter happy table basket "
    "travel number water evening through beneath silver market thunder pocket listen gentle system station"
).split()
TICKS_PER_SECOND = 960  # 480 ticks per beat at 120 beats per minute


def midi_bytes(events: list[tuple[int, bytes]]) -> bytes:
    """A format-0 standard MIDI file from `(tick, message)` events (sorted by tick)."""

    def var_len(value: int) -> bytes:
        out = [value & 0x7F]
        value >>= 7
        while value:
            out.append(0x80 | (value & 0x7F))
            value >>= 7
        return bytes(reversed(out))

    track, last = b"", 0
    for tick, message in sorted(events, key=lambda e: e[0]):
        track += var_len(tick - last) + message
        last = tick
    track += var_len(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_SECOND // 2)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def instrument_events(family: str, num_segments: int, period: float, rng: np.random.Generator) -> list:
    """Melodies and chords, one random program of the family per segment of `period` seconds (the last second
    silent so that release tails end within the segment)."""
    events = []
    for k in range(num_segments):
        start = int(k * period * TICKS_PER_SECOND)
        drums = family == "drums"
        channel = 9 if drums else 0
        program = int(rng.choice(DRUM_KITS)) if drums else int(rng.choice(list(INSTRUMENTS[family])))
        events.append((start, bytes([0xC0 | channel, program])))
        low, high = (35, 81) if drums else NOTE_RANGES.get(family, (45, 84))
        t = start + int(rng.uniform(0, 0.4) * TICKS_PER_SECOND)
        end = start + int((period - 1.0) * TICKS_PER_SECOND)
        step = rng.uniform(0.12, 0.5)
        while t < end:
            length = int(step * rng.uniform(0.6, 1.8) * TICKS_PER_SECOND)
            chord = rng.integers(1, 4) if rng.random() < 0.3 and not drums else 1
            root = int(rng.integers(low, high))
            for note in [root, root + 4, root + 7][:chord]:
                velocity = int(rng.integers(60, 120))
                events.append((t, bytes([0x90 | channel, min(note, 127), velocity])))
                events.append((min(t + length, end), bytes([0x80 | channel, min(note, 127), 0])))
            t += int(step * TICKS_PER_SECOND * rng.choice([0.5, 1, 1, 2]))
    return events


def render_instrument(family: str, num_segments: int, seconds: float, rng, workdir: str) -> list[np.ndarray]:
    period = seconds + 1.0
    midi = os.path.join(workdir, f"{family}.mid")
    wav = os.path.join(workdir, f"{family}.wav")
    with open(midi, "wb") as f:
        f.write(midi_bytes(instrument_events(family, num_segments, period, rng)))
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SAMPLE_RATE), "-F", wav, SOUNDFONT, midi],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE, sr
    audio = audio.mean(axis=1)
    n = int(seconds * SAMPLE_RATE)
    step = int(period * SAMPLE_RATE)
    return [
        np.pad(audio[k * step : k * step + n], (0, max(0, n - len(audio[k * step : k * step + n]))))
        for k in range(num_segments)
    ]


def sox_to_array(args: list[str], seconds: float, workdir: str) -> np.ndarray:
    path = os.path.join(workdir, "sox.wav")
    subprocess.run(
        ["sox", "-V1", *args[:1], "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", path, *args[1:]], check=True
    )
    audio, _ = sf.read(path, dtype="float32")
    n = int(seconds * SAMPLE_RATE)
    return np.pad(audio[:n], (0, max(0, n - len(audio))))


def render_speech(seconds: float, rng, workdir: str) -> np.ndarray:
    words = " ".join(rng.choice(WORDS, size=int(rng.integers(6, 14))))
    voice = f"{rng.choice(VOICES)}+{rng.choice(VARIANTS)}"
    raw = os.path.join(workdir, "speech.wav")
    speed, pitch = str(int(rng.integers(120, 200))), str(int(rng.integers(20, 80)))
    subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-p", pitch, "-w", raw, words], check=True)
    offset = f"{rng.uniform(0, 0.8):.3f}"
    return sox_to_array([raw, "pad", offset, "trim", "0", str(seconds)], seconds, workdir)


def render_noise(seconds: float, rng, workdir: str) -> np.ndarray:
    color = rng.choice(["whitenoise", "pinknoise", "brownnoise"])
    center, width = int(rng.integers(200, 6000)), int(rng.integers(100, 3000))
    tremolo = f"{rng.uniform(0.1, 3):.2f}"
    return sox_to_array(
        ["-n", "synth", str(seconds), color, "band", str(center), str(width), "tremolo", tremolo, "60"],
        seconds,
        workdir,
    )


def render_tone(seconds: float, rng, workdir: str) -> np.ndarray:
    shape = rng.choice(["sine", "square", "sawtooth", "triangle"])
    low, high = sorted(rng.integers(300, 3000, size=2))
    sweep = rng.choice(["-", ":", "+"])  # linear, square and exponential sweeps: sirens and chirps
    gate = f"{rng.uniform(1, 8):.2f}"
    return sox_to_array(
        ["-n", "synth", str(seconds), shape, f"{low}{sweep}{high}", "tremolo", gate, str(int(rng.integers(1, 100)))],
        seconds,
        workdir,
    )


def mixtures(num_clips: int, rng) -> list[list[str]]:
    """Class lists of the clips: 1, 2 or 3 different classes (40% / 40% / 20%)."""
    sizes = rng.choice([1, 2, 3], size=num_clips, p=[0.4, 0.4, 0.2])
    return [list(rng.choice(CLASSES, size=k, replace=False)) for k in sizes]


def render(output_dir: str, counts: dict[str, int], seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    plan = {split: mixtures(n, rng) for split, n in counts.items()}
    needed = {c: sum(clip.count(c) for clips in plan.values() for clip in clips) for c in CLASSES}
    with tempfile.TemporaryDirectory() as workdir:
        pools = {}
        for c in CLASSES:
            if c in INSTRUMENTS or c == "drums":
                pools[c] = render_instrument(c, needed[c], seconds, rng, workdir)
            else:
                make = {"speech": render_speech, "noise": render_noise, "synthetic_tone": render_tone}[c]
                pools[c] = [make(seconds, rng, workdir) for _ in range(needed[c])]
            print(f"rendered {needed[c]} segments of {c}", flush=True)

    for split, clips in plan.items():
        folder = os.path.join(output_dir, "pretrain/train" if split == "unlabelled" else f"labelled/{split}")
        os.makedirs(folder, exist_ok=True)
        rows = []
        for i, classes in enumerate(clips):
            mix = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
            for c in classes:
                source = pools[c].pop()
                peak = np.abs(source).max()
                if peak > 0:
                    mix += source / peak * 10 ** (rng.uniform(-9, 0) / 20)
            mix *= rng.uniform(0.3, 0.9) / max(np.abs(mix).max(), 1e-6)
            name = f"{split}_{i:04d}.wav"
            sf.write(os.path.join(folder, name), mix, SAMPLE_RATE, subtype="PCM_16")
            labels = {} if split == "unlabelled" else {"labels": sorted(str(c) for c in classes)}
            rows.append({"file_name": name, **labels})
        with open(os.path.join(folder, "metadata.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    # MLM pretraining reads the unlabelled clips and the labelled training audio (not validation or test).
    pretrain = os.path.join(output_dir, "pretrain/train")
    with open(os.path.join(pretrain, "metadata.jsonl"), "a") as f:
        for line in open(os.path.join(output_dir, "labelled/train/metadata.jsonl")):
            row = json.loads(line)
            shutil.copyfile(
                os.path.join(output_dir, "labelled/train", row["file_name"]), os.path.join(pretrain, row["file_name"])
            )
            f.write(json.dumps({"file_name": row["file_name"]}) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--train", type=int, default=320)
    parser.add_argument("--validation", type=int, default=200)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--unlabelled", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = {"train": args.train, "validation": args.validation, "test": args.test, "unlabelled": args.unlabelled}
    render(args.output_dir, counts, args.seconds, args.seed)


if __name__ == "__main__":
    main()
