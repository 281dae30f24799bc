"""
A small real-audio evaluation of AudioFormer: does MLM pretraining help, and does fine-tuning beat a bag-of-codes
model on the same codes?

    apt-get install espeak-ng fluidsynth fluid-soundfont-gm sox          # the sound sources
    python benchmarks/real_audio/run.py --work_dir real_audio             # everything; resumable
    python benchmarks/real_audio/run.py --work_dir real_audio --seeds 0 1 2 --only ft1_mlm_aug   # more seeds

Stages, each cached in `--work_dir` and skipped when its output exists (so an interrupted run continues):

1. `render.py`: 1240 clips of 4 s (24 kHz): 320 labelled for training, 80 for validation, 200 for testing, 640
   unlabelled; each a mix of 1-3 of 14 classes (10 General-MIDI instrument families, drums, speech, noise,
   synthetic tones), multi-label.
2. `fit_codec.py`: a 24 kHz EnCodec-shaped codec whose 4 codebooks are fitted by k-means on the unlabelled and
   training audio (not validation or test).
3. `python -m tokenization.tokenize_dataset` on the labelled and the pretraining audio.
4. `run_mlm.py`: MLM pretraining of a 4-layer, hidden-128 AudioFormer on codebook C1 of the unlabelled + training
   clips (no labels): 12 epochs ("mlm"), and 12 more from there ("mlm_long").
5. The models, each scored by mAP on the test clips (macro average precision over the classes, the metric of
   `run_classification.py`), the checkpoint chosen by validation mAP:
   - bag of codes: per-clip code counts (C1, or C1..C4) -> tf-idf -> one-vs-rest logistic regression;
   - linear probe: the MLM model's frozen pooled embeddings (`training/export_embeddings.py`) -> the same logistic
     regression;
   - FT1 (`run_classification.py`, LSEP, 12 epochs, batch 16) from scratch and from the MLM models, at learning
     rates 5e-4 and 2e-3, without and with the small-data settings (input-code masking, time masking, layer-wise
     learning-rate decay).
   The regularisation strength of each logistic regression is chosen on validation.

Writes `results.json` and `results.md` (the README table) in `--work_dir`. Everything took about 2 hours on the
2 shared CPU cores of the development machine (one thread per process; the MLM runs about 20 minutes each, a
fine-tuning run about 5).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODEL = "hidden_size=128,num_hidden_layers=4,num_attention_heads=4,intermediate_size=512,max_position_embeddings=512"
FINE_TUNE = [
    "--label_column_name", "labels", "--loss", "lsep", "--do_train", "--do_eval",
    "--eval_strategy", "epoch", "--save_strategy", "epoch", "--save_total_limit", "1",
    "--load_best_model_at_end", "--metric_for_best_model", "mAP", "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "64", "--logging_strategy", "epoch", "--report_to", "none",
    "--dataloader_num_workers", "0", "--disable_tqdm", "true",
]  # fmt: skip
SMALL_DATA = ["--code_mask_probability", "0.15", "--time_mask_probability", "0.2", "--time_mask_length", "10"]
# name -> (what the table calls it, the pretraining it starts from (None: from scratch), extra flags)
EXPERIMENTS = {
    "ft1_scratch": ("FT1 from scratch", None, ["--learning_rate", "5e-4", "--num_train_epochs", "12"]),
    "ft1_scratch_aug": (
        "FT1 from scratch + masking",
        None,
        ["--learning_rate", "5e-4", "--num_train_epochs", "12", *SMALL_DATA],
    ),
    "ft1_mlm": ("FT1 from MLM", "mlm", ["--learning_rate", "5e-4", "--num_train_epochs", "12"]),
    "ft1_mlm_aug": (
        "FT1 from MLM + masking + LLRD 0.75",
        "mlm",
        ["--learning_rate", "5e-4", "--num_train_epochs", "12", "--layerwise_lr_decay", "0.75", *SMALL_DATA],
    ),
    "ft1_scratch_lr2e-3": ("FT1 from scratch, lr 2e-3", None, ["--learning_rate", "2e-3", "--num_train_epochs", "12"]),
    "ft1_scratch_lr2e-3_aug": (
        "FT1 from scratch, lr 2e-3 + masking",
        None,
        ["--learning_rate", "2e-3", "--num_train_epochs", "12", *SMALL_DATA],
    ),
    "ft1_mlm_lr2e-3": ("FT1 from MLM, lr 2e-3", "mlm", ["--learning_rate", "2e-3", "--num_train_epochs", "12"]),
    "ft1_mlm_lr2e-3_aug": (
        "FT1 from MLM, lr 2e-3 + masking + LLRD 0.75",
        "mlm",
        ["--learning_rate", "2e-3", "--num_train_epochs", "12", "--layerwise_lr_decay", "0.75", *SMALL_DATA],
    ),
    "ft1_mlm_long_lr2e-3": (
        "FT1 from MLM (24 epochs), lr 2e-3",
        "mlm_long",
        ["--learning_rate", "2e-3", "--num_train_epochs", "12"],
    ),
    "ft1_mlm_long_lr2e-3_aug": (
        "FT1 from MLM (24 epochs), lr 2e-3 + masking + LLRD 0.75",
        "mlm_long",
        ["--learning_rate", "2e-3", "--num_train_epochs", "12", "--layerwise_lr_decay", "0.75", *SMALL_DATA],
    ),
}


THREADS = 1


def run(cmd: list[str], log: str) -> None:
    """Runs a stage as a subprocess of this checkout (its output in `log`); stops with the log's tail on failure."""
    print("$", " ".join(cmd), flush=True)
    # On a shared 2-core machine, multi-threaded kernels spin against each other: one thread was 40x faster here.
    threads = str(THREADS)
    env = dict(os.environ, PYTHONPATH=REPO, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    with open(log, "w") as f:
        code = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = open(log).read()[-3000:]
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\n{tail}")


def prepare(work: str) -> None:
    audio, codec, codes = (os.path.join(work, d) for d in ("audio", "codec", "codes"))
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(os.path.join(audio, "labelled/test/metadata.jsonl")):
        run([sys.executable, os.path.join(HERE, "render.py"), "--output_dir", audio], os.path.join(work, "render.log"))
    if not os.path.exists(os.path.join(codec, "preprocessor_config.json")):
        run(
            [sys.executable, os.path.join(HERE, "fit_codec.py"), "--audio_dir", os.path.join(audio, "pretrain/train"),
             "--output_dir", codec],
            os.path.join(work, "fit_codec.log"),
        )  # fmt: skip
    for part in ("labelled", "pretrain"):
        if not os.path.exists(os.path.join(codes, part, "dataset_dict.json")):
            run(
                [sys.executable, "-m", "tokenization.tokenize_dataset", "--feature_extractor_name", codec,
                 "--data_dir", os.path.join(audio, part), "--output_dir", os.path.join(codes, part)],
                os.path.join(work, f"tokenize_{part}.log"),
            )  # fmt: skip
    pretrain(work, "mlm")


# MLM pretraining runs: name -> (start from, epochs). "mlm_long" continues "mlm" (a fresh schedule: warm-up, then
# linear decay), 24 epochs in all.
PRETRAINING = {"mlm": (None, 12), "mlm_long": ("mlm", 12), "random": (None, 0)}  # "random": untrained, a reference


def pretrain(work: str, name: str) -> str:
    out = os.path.join(work, "runs", name)
    start, epochs = PRETRAINING[name]
    if epochs == 0 and not os.path.exists(os.path.join(out, "model.safetensors")):
        import torch

        from modeling_audioformer import AudioFormerForMaskedLM

        torch.manual_seed(0)
        AudioFormerForMaskedLM(load_config(pretrain(work, "mlm"))).save_pretrained(out)  # the same architecture
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        init = ["--model_name_or_path", pretrain(work, start)] if start else [
            "--config_overrides", MODEL, "--codebook_index", "0"]  # fmt: skip
        run(
            [sys.executable, "run_mlm.py", "--tokenized_dataset", os.path.join(work, "codes", "pretrain"), *init,
             "--do_train", "--do_eval", "--validation_split_percentage", "5", "--mlm_probability", "0.25",
             "--learning_rate", "1e-3", "--warmup_steps", "30", "--num_train_epochs", str(epochs),
             "--per_device_train_batch_size", "32", "--eval_strategy", "epoch", "--logging_strategy", "epoch",
             "--save_strategy", "no", "--seed", "0", "--report_to", "none", "--disable_tqdm", "true",
             "--dataloader_num_workers", "0", "--output_dir", out],
            out + ".log",
        )  # fmt: skip
    return out


def load_config(path: str):
    from modeling_audioformer import AudioFormerConfig

    return AudioFormerConfig.from_pretrained(path)


def fine_tune(work: str, name: str, seed: int) -> str:
    _, init, flags = EXPERIMENTS[name]
    out = os.path.join(work, "runs", f"{name}_seed{seed}")
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        start = ["--model_name_or_path", pretrain(work, init)] if init else [
            "--config_overrides", MODEL, "--codebook_index", "0"]  # fmt: skip
        run(
            [sys.executable, "run_classification.py", "--tokenized_dataset", os.path.join(work, "codes", "labelled"),
             *start, *FINE_TUNE, *flags, "--seed", str(seed), "--output_dir", out],
            out + ".log",
        )  # fmt: skip
    return out


def load_split(work: str, split: str):
    import datasets

    ds = datasets.load_from_disk(os.path.join(work, "codes", "labelled"))[split]
    return ds


def label_matrix(rows, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    y = np.zeros((len(rows), len(names)), dtype=np.int64)
    for i, labels in enumerate(rows):
        y[i, [index[n] for n in labels]] = 1
    return y


def mean_average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Macro AP over the classes with a positive clip (as `training/metrics/mean_average_precision`)."""
    from sklearn.metrics import average_precision_score

    keep = y.sum(axis=0) > 0
    return float(average_precision_score(y[:, keep], scores[:, keep], average="macro"))


def logistic_probe(x: dict, y: dict, seed: int = 0) -> tuple[float, float, float]:
    """One-vs-rest logistic regression on standardised features, C chosen on validation mAP; returns
    (validation mAP, test mAP, C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in (0.001, 0.01, 0.1, 1.0, 10.0):
        clf = make_pipeline(
            StandardScaler(), OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000, random_state=seed))
        )
        clf.fit(x["train"], y["train"])
        val = mean_average_precision(y["validation"], clf.predict_proba(x["validation"]))
        if best is None or val > best[0]:
            best = (val, mean_average_precision(y["test"], clf.predict_proba(x["test"])), c)
    return best


def bag_of_codes(work: str, codebooks: list[int], names: list[str]) -> tuple[float, float, float]:
    """tf-idf of per-clip code counts of the given codebooks -> logistic regression."""
    from sklearn.feature_extraction.text import TfidfTransformer

    x, y = {}, {}
    for split in ("train", "validation", "test"):
        ds = load_split(work, split)
        counts = np.zeros((len(ds), 1024 * len(codebooks)), dtype=np.float32)
        for i, rows in enumerate(ds["input_ids"]):
            for j, k in enumerate(codebooks):
                codes = np.asarray(rows[k][1:-1], dtype=np.int64) - 3  # drop <BOA>, <EOA>; id c + 3 -> code c
                counts[i] += np.bincount(codes + 1024 * j, minlength=counts.shape[1])
        x[split], y[split] = counts, label_matrix(ds["labels"], names)
    tfidf = TfidfTransformer(sublinear_tf=True).fit(x["train"])
    x = {s: tfidf.transform(v).toarray() for s, v in x.items()}
    return logistic_probe(x, y)


def linear_probe(work: str, names: list[str], pretraining: str = "mlm") -> tuple[float, float, float]:
    import datasets

    emb = os.path.join(work, f"embeddings_{pretraining}")
    if not os.path.exists(os.path.join(emb, "dataset_dict.json")):
        run(
            [sys.executable, "-m", "training.export_embeddings", "--model_name_or_path", pretrain(work, pretraining),
             "--tokenized_dataset", os.path.join(work, "codes", "labelled"), "--output_dir", emb],
            emb + ".log",
        )  # fmt: skip
    dsd = datasets.load_from_disk(emb)
    x = {s: np.asarray(dsd[s]["embedding"], dtype=np.float32) for s in ("train", "validation", "test")}
    y = {s: label_matrix(dsd[s]["labels"], names) for s in x}
    return logistic_probe(x, y)


def test_map(run_dir: str, work: str, names: list[str]) -> tuple[float, float]:
    """(validation mAP, test mAP) of a fine-tuned model (the checkpoint chosen on validation)."""
    import torch

    import modeling_audioformer  # noqa: F401
    from modeling_audioformer import AudioFormerForAudioClassification
    from training.collators import pad_code_rows

    model = AudioFormerForAudioClassification.from_pretrained(run_dir).eval()
    order = [model.config.id2label[i] for i in range(len(names))]
    out = []
    for split in ("validation", "test"):
        ds = load_split(work, split)
        logits = []
        with torch.no_grad():
            for start in range(0, len(ds), 64):
                batch = pad_code_rows(
                    [{"input_ids": r} for r in ds[start : start + 64]["input_ids"]], codebook_index=0
                )
                logits.append(model(**batch).logits.float().numpy())
        out.append(mean_average_precision(label_matrix(ds["labels"], order), np.concatenate(logits)))
    return tuple(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default=os.path.join(REPO, "real_audio"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", default=None, help="Fine-tuning runs to do (default: all).")
    parser.add_argument("--threads", type=int, default=1, help="Threads per training process (OMP_NUM_THREADS).")
    args = parser.parse_args(argv)
    global THREADS
    THREADS = args.threads
    sys.path.insert(0, REPO)
    work = os.path.abspath(args.work_dir)
    prepare(work)

    names = sorted({n for row in load_split(work, "train")["labels"] for n in row})
    results_path = os.path.join(work, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}

    def record(key, label, val, test, **extra):
        if os.path.exists(results_path):  # re-read: another instance (other --only runs) may have added rows
            results.update({k: v for k, v in json.load(open(results_path)).items() if k not in results})
        results[key] = {"model": label, "validation_mAP": round(val, 4), "test_mAP": round(test, 4), **extra}
        json.dump(results, open(results_path, "w"), indent=2)
        print(f"{label}: validation mAP {val:.4f}, test mAP {test:.4f}", flush=True)

    if "bag_of_codes_c1" not in results:
        val, test, c = bag_of_codes(work, [0], names)
        record("bag_of_codes_c1", "bag of codes (C1) + logistic regression", val, test, C=c)
    if "bag_of_codes_c1_c4" not in results:
        val, test, c = bag_of_codes(work, [0, 1, 2, 3], names)
        record("bag_of_codes_c1_c4", "bag of codes (C1..C4) + logistic regression", val, test, C=c)
    if "linear_probe_mlm" not in results:
        val, test, c = linear_probe(work, names)
        record("linear_probe_mlm", "linear probe on MLM features (C1) + logistic regression", val, test, C=c)
    if "linear_probe_random" not in results:
        val, test, c = linear_probe(work, names, "random")
        record("linear_probe_random", "linear probe on an untrained model's features (reference)", val, test, C=c)
    selected = args.only if args.only is not None else list(EXPERIMENTS)
    if "linear_probe_mlm_long" not in results and any(EXPERIMENTS[n][1] == "mlm_long" for n in selected):
        val, test, c = linear_probe(work, names, "mlm_long")
        record(
            "linear_probe_mlm_long", "linear probe on MLM (24 epochs) features + logistic regression", val, test, C=c
        )
    for name in selected:
        for seed in args.seeds:
            key = f"{name}_seed{seed}"
            if key not in results:
                val, test = test_map(fine_tune(work, name, seed), work, names)
                record(key, EXPERIMENTS[name][0], val, test, seed=seed)
    write_table(results, os.path.join(work, "results.md"))


def write_table(results: dict, path: str) -> None:
    groups: dict[str, list] = {}
    for key, row in results.items():
        name = key.rsplit("_seed", 1)[0]
        label = EXPERIMENTS[name][0] if name in EXPERIMENTS else row["model"]  # the current names
        groups.setdefault(label, []).append(row)
    lines = ["| model | validation mAP | test mAP | runs |", "| --- | --- | --- | --- |"]
    for label, rows in groups.items():
        val = np.array([r["validation_mAP"] for r in rows])
        test = np.array([r["test_mAP"] for r in rows])
        spread = f" ± {test.std():.3f}" if len(rows) > 1 else ""
        lines.append(f"| {label} | {val.mean():.3f} | {test.mean():.3f}{spread} | {len(rows)} |")
    open(path, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
