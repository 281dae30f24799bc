"""
A small real-audio evaluation of AudioFormer: does fine-tuning match a bag-of-codes model on the same codes, and does
MLM pretraining help?

    apt-get install espeak-ng fluidsynth fluid-soundfont-gm sox          # the sound sources
    python benchmarks/real_audio/run.py --work_dir real_audio             # the README table; resumable
    python benchmarks/real_audio/run.py --work_dir real_audio --only ft1_mlm40_lr1e-3 --seeds 3 4   # more seeds

Stages, each cached in `--work_dir` and skipped when its output exists (so an interrupted run continues, and two
instances with different `--only` can run side by side):

1. `render.py`: 3,920 clips of 4 s (24 kHz): 320 labelled for training, 200 for validation, 400 for testing, 3,000
   unlabelled; each a mix of 1-3 of 14 classes (10 General-MIDI instrument families, drums, speech, noise,
   synthetic tones), multi-label.
2. `fit_codec.py`: a 24 kHz EnCodec-shaped codec whose 4 codebooks are fitted by k-means on the unlabelled and
   training audio (not validation or test).
3. `python -m audioformer.tokenization.tokenize_dataset` on the labelled and the pretraining audio.
4. `run_mlm.py`: MLM pretraining (`PRETRAINING`) of a 4-layer, hidden-128 AudioFormer on codebook C1 of the
   unlabelled + training clips (no labels): 20 epochs, then 20 more from there.
5. The rows of the table (`PROBES`, `EXPERIMENTS`), each scored by mAP on the test clips (macro average precision
   over the classes, the metric of `run_classification.py`), everything chosen on the validation clips:
   - bag of codes: per-clip code counts (C1, or C1..C4) -> tf-idf -> one-vs-rest logistic regression;
   - linear probes: frozen pooled embeddings (`training/export_embeddings.py`) of an MLM checkpoint or of an
     untrained model -> the same logistic regression;
   - log-mel: per-clip mean and standard deviation of 64 log-mel bands -> the same logistic regression (reads the
     audio, not the codes: what a user tries first);
   - FT1 (`run_classification.py`, LSEP, batch 16) from scratch and from the MLM model, the epoch with the best
     validation mAP kept; each run with `--seeds` (default 0 1 2), reported as mean ± standard deviation;
   - the few-label recipe (`RECIPE`, one seed each unless `--seeds`): a small model, dropout, weight decay, masking,
     embedding mixup, fused (C1..C4) models from scratch and from a fused MLM, and a bag of the code embeddings
     (`num_hidden_layers=0`: no attention) on C1 and on C1..C4;
   - linear probing, then fine-tuning (LP-FT): the fused MLM frozen under a standardised head
     (`--freeze_backbone --classifier_batch_norm`), then every weight from that run of the same seed at a lower rate
     with masking (a row whose start is `ft:ROW`), by FT1 or by FT2 with the C1 MLM as the positive view.
   A logistic regression's only choice is its C (on validation mAP); it has no randomness, so it runs once. Every
   row also reports the AP of the speech class.

Writes `results.json` (one entry per run) and `results.md` (the README table) in `--work_dir`. One thread per process:
on the shared 2-core machine, multi-threaded kernels of two processes spin against each other.
"""

import argparse
import fcntl
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
MLM = [
    "--do_train", "--do_eval", "--validation_split_percentage", "5", "--mlm_probability", "0.25",
    "--learning_rate", "1e-3", "--warmup_steps", "100", "--per_device_train_batch_size", "32",
    "--eval_strategy", "steps", "--eval_steps", "250", "--logging_steps", "250", "--save_strategy", "steps",
    "--save_steps", "500", "--report_to", "none", "--disable_tqdm", "true",
    "--dataloader_num_workers", "0",
]  # fmt: skip
# MLM pretraining runs: name -> (epochs, the run it continues (None: from a fresh model), seed); 0 epochs: an
# untrained model of the same architecture. "mlm_40" continues "mlm" with a second schedule (warm-up, then linear
# decay) and another seed (the masks are drawn from (seed, epoch, clip): seed 0 would repeat the first run's masks).
# "mlm_small" pretrains the small model of the few-label recipe (`SMALL`), "mlm_fused_small" the same reading all
# four codebooks, "mlm_fused" the default model (4 x 128) reading all four for 20 epochs: name -> (..., its
# architecture, flags of run_mlm.py).
SMALL = "hidden_size=64,num_hidden_layers=2,num_attention_heads=4,intermediate_size=256,max_position_embeddings=512"
FUSED = ["--input_codebooks", "0", "1", "2", "3"]  # one model reading C1..C4 (the sum of their embeddings)
PRETRAINING = {
    "mlm": (20, None, 0, MODEL, []),
    "mlm_40": (20, "mlm", 1, MODEL, []),
    "random": (0, None, 0, MODEL, []),
    "mlm_small": (10, None, 0, SMALL, []),
    "mlm_fused_small": (10, None, 0, SMALL, FUSED),
    "mlm_fused": (20, None, 0, MODEL, FUSED),
}
# Linear probes: name -> (what the table calls it, the model: a pretraining run, or "run/checkpoint-N" of one).
PROBES = {
    "linear_probe_random": ("linear probe: untrained model (reference)", "random"),
    "linear_probe_mlm_500": ("linear probe: MLM, 500 steps (5 epochs)", "mlm/checkpoint-500"),
    "linear_probe_mlm_1000": ("linear probe: MLM, 1000 steps (10 epochs)", "mlm/checkpoint-1000"),
    "linear_probe_mlm_1500": ("linear probe: MLM, 1500 steps (15 epochs)", "mlm/checkpoint-1500"),
    "linear_probe_mlm": ("linear probe: MLM, 20 epochs (1980 steps)", "mlm"),
    "linear_probe_mlm_40": ("linear probe: MLM, 40 epochs (20 + 20)", "mlm_40"),
    "linear_probe_mlm_fused_500": (
        "linear probe: fused (C1..C4) MLM, 500 steps (5 epochs)",
        "mlm_fused/checkpoint-500",
    ),
    "linear_probe_mlm_fused_1000": (
        "linear probe: fused (C1..C4) MLM, 1000 steps (10 epochs)",
        "mlm_fused/checkpoint-1000",
    ),
    "linear_probe_mlm_fused_1500": (
        "linear probe: fused (C1..C4) MLM, 1500 steps (15 epochs)",
        "mlm_fused/checkpoint-1500",
    ),
    "linear_probe_mlm_fused": ("linear probe: fused (C1..C4) MLM, 20 epochs (1980 steps)", "mlm_fused"),
}
# Fine-tuning runs: name -> (what the table calls it, the pretraining it starts from (None: from scratch), flags,
# seeds). `--seeds` replaces the seeds of every row.
SEEDS = (0, 1, 2)
FT1 = ["--learning_rate", "1e-3", "--num_train_epochs", "20"]
CODE_MASKING = ["--code_mask_probability", "0.15"]
TIME_MASKING = ["--time_mask_probability", "0.2", "--time_mask_length", "10"]
# The few-label recipe (issue 18 part 2), explored with one seed each (marked "1 seed, exploration" in the table),
# cheapest first: a smaller model, dropout 0.3 (hidden and attention) with weight decay 0.05, code + time masking,
# mixup on the input embeddings (`--mixup_alpha`, training/mixup.py).
DROPOUT = "hidden_dropout_prob=0.3,attention_probs_dropout_prob=0.3"
ONE_LAYER = SMALL.replace("num_hidden_layers=2", "num_hidden_layers=1")
WEIGHT_DECAY = ["--weight_decay", "0.05"]
MIXUP = ["--mixup_alpha", "0.4"]
# The lead's probe: the same code embeddings without attention (`num_hidden_layers=0`, a bag of embeddings), with
# binary cross-entropy, which a bag learns better than LSEP, at lr 3e-3 for 60 epochs.
BAG = "hidden_size=128,num_hidden_layers=0,num_attention_heads=4,intermediate_size=512,max_position_embeddings=512"
BAG_FT = ["--loss", "bce", "--learning_rate", "3e-3", "--num_train_epochs", "60"]
LINEAR_PROBE = ["--freeze_backbone", "--classifier_batch_norm", "--loss", "bce", "--learning_rate", "3e-3"]
FT2_C1 = ["--mpc_positive_models", "pretrained:mlm", "--mpc_alpha", "0.95", "--mpc_temperature", "0.05"]
LP_FT = ["--loss", "bce", "--learning_rate", "3e-4", *CODE_MASKING, *TIME_MASKING]
RECIPE = {
    "ft1_small_scratch": ("FT1 from scratch, small (2 x 64), lr 1e-3", None, ["--config_overrides", SMALL, *FT1]),
    "ft1_small_scratch_reg": (
        "FT1 from scratch, small (2 x 64), lr 1e-3 + dropout 0.3 + weight decay 0.05",
        None,
        ["--config_overrides", f"{SMALL},{DROPOUT}", *FT1, *WEIGHT_DECAY],
    ),
    "ft1_small_scratch_reg_mask": (
        "FT1 from scratch, small (2 x 64), lr 1e-3 + dropout 0.3 + weight decay 0.05 + code and time masking",
        None,
        ["--config_overrides", f"{SMALL},{DROPOUT}", *FT1, *WEIGHT_DECAY, *CODE_MASKING, *TIME_MASKING],
    ),
    "ft1_small_scratch_reg_mask_mixup": (
        "FT1 from scratch, small (2 x 64), lr 1e-3 + dropout 0.3 + weight decay 0.05 + code and time masking"
        " + embedding mixup 0.4",
        None,
        ["--config_overrides", f"{SMALL},{DROPOUT}", *FT1, *WEIGHT_DECAY, *CODE_MASKING, *TIME_MASKING, *MIXUP],
    ),
    "ft1_1layer_scratch_reg_mask": (
        "FT1 from scratch, 1 x 64, lr 1e-3 + dropout 0.3 + weight decay 0.05 + code and time masking",
        None,
        ["--config_overrides", f"{ONE_LAYER},{DROPOUT}", *FT1, *WEIGHT_DECAY, *CODE_MASKING, *TIME_MASKING],
    ),
    "ft1_fused_small_scratch_reg_mask": (
        "FT1 fused (C1..C4) from scratch, small (2 x 64), lr 1e-3 + dropout 0.3 + weight decay 0.05 + code and time"
        " masking",
        None,
        ["--config_overrides", f"{SMALL},{DROPOUT}", *FUSED, *FT1, *WEIGHT_DECAY, *CODE_MASKING, *TIME_MASKING],
    ),
    "ft1_mlm_fused_small_wd_mask": (
        "FT1 fused (C1..C4) from fused MLM small (2 x 64, 10 epochs), lr 1e-3 + weight decay 0.05 + code and time"
        " masking",
        "mlm_fused_small",
        [*FT1, *WEIGHT_DECAY, *CODE_MASKING, *TIME_MASKING],
    ),
    "ft1_mlm_fused_small500_wd_mask": (
        "FT1 fused (C1..C4) from fused MLM small (2 x 64, 500 steps, 5 epochs), lr 1e-3 + weight decay 0.05 + code"
        " and time masking (dropout 0.1: a checkpoint takes no --config_overrides)",
        "mlm_fused_small/checkpoint-500",
        [*FT1, *WEIGHT_DECAY, *CODE_MASKING, *TIME_MASKING],
    ),
    "ft1_scratch_reg_mask": (
        "FT1 from scratch, lr 1e-3 + dropout 0.3 + weight decay 0.05 + code and time masking",
        None,
        ["--config_overrides", f"{MODEL},{DROPOUT}", *FT1, *WEIGHT_DECAY, *CODE_MASKING, *TIME_MASKING],
    ),
    "ft1_bag_fused": (
        "FT1 fused (C1..C4), 0 layers (a bag of the code embeddings), BCE, lr 3e-3, 60 epochs",
        None,
        ["--config_overrides", BAG, *FUSED, *BAG_FT],
    ),
    "ft1_bag_c1": (
        "FT1 on C1, 0 layers (a bag of the code embeddings), BCE, lr 3e-3, 60 epochs",
        None,
        ["--config_overrides", BAG, *BAG_FT],
    ),
    "ft1_fused_scratch_mask": (
        "FT1 fused (C1..C4) from scratch, lr 1e-3 + code and time masking",
        None,
        ["--config_overrides", MODEL, *FUSED, *FT1, *CODE_MASKING, *TIME_MASKING],
    ),
    "ft1_mlm_fused_mask": (
        "FT1 fused (C1..C4) from fused MLM (20 epochs), lr 1e-3 + code and time masking",
        "mlm_fused",
        [*FT1, *CODE_MASKING, *TIME_MASKING],
    ),
    "ft1_mlm_fused1500_mask": (
        "FT1 fused (C1..C4) from fused MLM (1500 steps, 15 epochs), lr 1e-3 + code and time masking",
        "mlm_fused/checkpoint-1500",
        [*FT1, *CODE_MASKING, *TIME_MASKING],
    ),
    # Linear probing, then fine-tuning (LP-FT, Kumar et al. 2022): the classifier first learns on the frozen MLM
    # (its pooled features standardised, `--classifier_batch_norm`), then everything trains from there at a lower
    # rate, so the first steps of fine-tuning do not pull the pretrained features towards a random classifier.
    # A row whose start is "ft:NAME" starts from row NAME's run of the same seed.
    "ft1_mlm_fused_lp_bn": (
        "linear probe (FT1 machinery): fused MLM (20 epochs) frozen, standardised features, BCE, lr 3e-3, 30 epochs",
        "mlm_fused",
        [*LINEAR_PROBE, "--num_train_epochs", "30"],
    ),
    "ft1_mlm_fused1500_lp_bn": (
        "linear probe (FT1 machinery): fused MLM (1500 steps, 15 epochs) frozen, standardised features, BCE, lr 3e-3,"
        " 30 epochs",
        "mlm_fused/checkpoint-1500",
        [*LINEAR_PROBE, "--num_train_epochs", "30"],
    ),
    "ft1_mlm_fused1500_lpft_bn_mask": (
        "FT1 fused (C1..C4) from fused MLM (1500 steps, 15 epochs), LP-FT: its probe, then all weights, BCE, lr 3e-4,"
        " 20 epochs + code and time masking",
        "ft:ft1_mlm_fused1500_lp_bn",
        [*LP_FT, "--num_train_epochs", "20"],
    ),
    "ft1_mlm_fused1500_lpft_bn_mask_llrd": (
        "FT1 fused (C1..C4) from fused MLM (1500 steps, 15 epochs), LP-FT, BCE, lr 3e-4 + LLRD 0.75, 20 epochs + code"
        " and time masking",
        "ft:ft1_mlm_fused1500_lp_bn",
        [*LP_FT, "--num_train_epochs", "20", "--layerwise_lr_decay", "0.75"],
    ),
    "ft1_mlm_fused_lpft_bn_mask": (
        "FT1 fused (C1..C4) from fused MLM, LP-FT: the probe above, then all weights, BCE, lr 3e-4, 20 epochs + code"
        " and time masking",
        "ft:ft1_mlm_fused_lp_bn",
        [*LP_FT, "--num_train_epochs", "20"],
    ),
    # FT2 (eq. 9) in the second stage: the C1 MLM, frozen, is the positive view of each clip for the fused anchor
    # ("pretrained:NAME" in the flags is the folder of that pretraining run).
    "ft2_mlm_fused_lpft_bn_mask": (
        "FT2 fused (C1..C4) from fused MLM, LP-FT, positive: the C1 MLM (20 epochs), alpha 0.95, tau 0.05, BCE,"
        " lr 3e-4, 20 epochs + code and time masking",
        "ft:ft1_mlm_fused_lp_bn",
        [*LP_FT, "--num_train_epochs", "20", *FT2_C1],
    ),
    "ft1_mlm_fused_lpft_bn_mask_e40": (
        "FT1 fused (C1..C4) from fused MLM, LP-FT, BCE, lr 3e-4, 40 epochs + code and time masking",
        "ft:ft1_mlm_fused_lp_bn",
        [*LP_FT, "--num_train_epochs", "40"],
    ),
    "ft1_mlm_small_wd_mask": (
        "FT1 from MLM small (2 x 64, 10 epochs), lr 1e-3 + weight decay 0.05 + code and time masking",
        "mlm_small",
        [*FT1, *WEIGHT_DECAY, *CODE_MASKING, *TIME_MASKING],
    ),
}
EXPERIMENTS = {
    "ft1_scratch_lr1e-3": ("FT1 from scratch, lr 1e-3", None, FT1, SEEDS),
    "ft1_scratch_lr2e-3": (
        "FT1 from scratch, lr 2e-3",
        None,
        ["--learning_rate", "2e-3", "--num_train_epochs", "20"],
        (0,),
    ),
    "ft1_scratch_lr1e-3_codemask": (
        "FT1 from scratch, lr 1e-3 + code masking 0.15",
        None,
        [*FT1, *CODE_MASKING],
        SEEDS,
    ),
    "ft1_scratch_lr1e-3_codemask_timemask": (
        "FT1 from scratch, lr 1e-3 + code masking 0.15 + time masking 0.2 x 10 frames",
        None,
        [*FT1, *CODE_MASKING, *TIME_MASKING],
        SEEDS,
    ),
    "ft1_mlm1000_lr1e-3": ("FT1 from MLM (1000 steps, 10 epochs), lr 1e-3", "mlm/checkpoint-1000", FT1, SEEDS),
    "ft1_mlm_lr1e-3": ("FT1 from MLM (20 epochs), lr 1e-3", "mlm", FT1, SEEDS),
    "ft1_mlm_lr1e-3_codemask": (
        "FT1 from MLM (20 epochs), lr 1e-3 + code masking 0.15",
        "mlm",
        [*FT1, *CODE_MASKING],
        SEEDS,
    ),
    "ft1_mlm_lr1e-3_codemask_timemask": (
        "FT1 from MLM (20 epochs), lr 1e-3 + code masking 0.15 + time masking 0.2 x 10 frames",
        "mlm",
        [*FT1, *CODE_MASKING, *TIME_MASKING],
        SEEDS,
    ),
    "ft1_mlm_lr3e-4_llrd": (
        "FT1 from MLM (20 epochs), lr 3e-4 + LLRD 0.75",
        "mlm",
        ["--learning_rate", "3e-4", "--num_train_epochs", "20", "--layerwise_lr_decay", "0.75"],
        SEEDS,
    ),
    "ft1_mlm40_lr1e-3": ("FT1 from MLM (40 epochs), lr 1e-3", "mlm_40", FT1, SEEDS),
    "ft1_mlm40_lr1e-3_codemask": (
        "FT1 from MLM (40 epochs), lr 1e-3 + code masking 0.15",
        "mlm_40",
        [*FT1, *CODE_MASKING],
        SEEDS,
    ),
    "ft1_mlm40_lr1e-3_codemask_timemask": (
        "FT1 from MLM (40 epochs), lr 1e-3 + code masking 0.15 + time masking 0.2 x 10 frames",
        "mlm_40",
        [*FT1, *CODE_MASKING, *TIME_MASKING],
        SEEDS,
    ),
    **{name: (label, init, flags, (0,)) for name, (label, init, flags) in RECIPE.items()},
}


THREADS = 1
SPEECH = "speech"


def run(cmd: list[str], log: str) -> None:
    """Runs a stage as a subprocess of this checkout (its output in `log`); stops with the log's tail on failure."""
    print("$", " ".join(cmd), flush=True)
    threads = str(THREADS)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    # Appended (O_APPEND), not truncated: a second launch that the folder's lock refuses must not clobber the log
    # of the run that holds it.
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        code = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = open(log).read()[-3000:]
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\n{tail}")


def prepare(work: str) -> None:
    audio, codec, codes = (os.path.join(work, d) for d in ("audio", "codec", "codes"))
    os.makedirs(os.path.join(work, "runs"), exist_ok=True)
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
                [sys.executable, "-m", "audioformer.tokenization.tokenize_dataset", "--feature_extractor_name", codec,
                 "--data_dir", os.path.join(audio, part), "--output_dir", os.path.join(codes, part)],
                os.path.join(work, f"tokenize_{part}.log"),
            )  # fmt: skip


def pretrain(work: str, spec: str) -> str:
    """The folder of a pretrained model: `spec` is a `PRETRAINING` name, or `name/checkpoint-N` (a checkpoint the
    run saved on its way). Runs the pretraining first if its output is missing."""
    name, _, checkpoint = spec.partition("/")
    out = os.path.join(work, "runs", name)
    if checkpoint and os.path.exists(os.path.join(out, checkpoint, "model.safetensors")):
        return os.path.join(out, checkpoint)  # saved on the way: usable while the run goes on
    epochs, start, seed, model, extra = PRETRAINING[name]
    if epochs == 0 and not os.path.exists(os.path.join(out, "model.safetensors")):
        import torch

        from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForMaskedLM

        torch.manual_seed(seed)
        config = AudioFormerConfig(
            codebook_index=0, **{k: int(v) for k, v in (kv.split("=") for kv in model.split(","))}
        )
        AudioFormerForMaskedLM(config).save_pretrained(out)
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        init = ["--model_name_or_path", pretrain(work, start)] if start else [
            "--config_overrides", model, "--codebook_index", "0"]  # fmt: skip
        run(
            [sys.executable, "run_mlm.py", "--tokenized_dataset", os.path.join(work, "codes", "pretrain"), *init,
             *MLM, *extra, "--num_train_epochs", str(epochs), "--seed", str(seed), "--output_dir", out],
            out + ".log",
        )  # fmt: skip
    return os.path.join(out, checkpoint) if checkpoint else out


def fine_tune(work: str, name: str, seed: int) -> str:
    _, init, flags, _ = EXPERIMENTS[name]
    out = os.path.join(work, "runs", f"{name}_seed{seed}")
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        # A row's own --config_overrides (architecture, dropout) replaces the default architecture from scratch,
        # and applies to the checkpoint's config when it starts from one.
        own = "--config_overrides" in flags
        if init and init.startswith("ft:"):  # a second stage: from another row's run of this seed
            start = ["--model_name_or_path", fine_tune(work, init.removeprefix("ft:"), seed)]
        elif init:
            start = ["--model_name_or_path", pretrain(work, init)]
        else:
            start = ["--codebook_index", "0"] if own else ["--config_overrides", MODEL, "--codebook_index", "0"]
        flags = [pretrain(work, f.removeprefix("pretrained:")) if f.startswith("pretrained:") else f for f in flags]
        run(
            [sys.executable, "run_classification.py", "--tokenized_dataset", os.path.join(work, "codes", "labelled"),
             *start, *FINE_TUNE, *flags, "--seed", str(seed), "--output_dir", out],
            out + ".log",
        )  # fmt: skip
    return out


def load_split(work: str, split: str):
    import datasets

    return datasets.load_from_disk(os.path.join(work, "codes", "labelled"))[split]


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


def speech_average_precision(y: np.ndarray, scores: np.ndarray, names: list[str]) -> float:
    """AP of the speech class alone (issue 18's goal compares the models on it)."""
    from sklearn.metrics import average_precision_score

    k = names.index(SPEECH)
    return float(average_precision_score(y[:, k], scores[:, k]))


def logistic_probe(x: dict, y: dict, names: list[str]) -> dict:
    """One-vs-rest logistic regression on standardised features, C chosen on validation mAP from a half-decade grid;
    returns the scores of `scores()` and C. Deterministic (lbfgs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0):
        clf = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=c, max_iter=3000)))
        clf.fit(x["train"], y["train"])
        val = mean_average_precision(y["validation"], clf.predict_proba(x["validation"]))
        if best is None or val > best[0]:
            best = (val, c, {s: clf.predict_proba(x[s]) for s in ("validation", "test")})
    return {**scores(y, best[2], names), "C": best[1]}


def scores(y: dict, predictions: dict, names: list[str]) -> dict:
    """mAP and the speech class's AP on the validation and the test clips; `y`, `predictions`: split -> `(N, C)`."""
    out = {}
    for split in ("validation", "test"):
        out[f"{split}_mAP"] = mean_average_precision(y[split], predictions[split])
        out[f"{split}_AP_speech"] = speech_average_precision(y[split], predictions[split], names)
    return out


def bag_of_codes(work: str, codebooks: list[int], names: list[str]) -> dict:
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
    return logistic_probe(x, y, names)


def log_mel(work: str, names: list[str]) -> dict:
    """What a user tries first: per-clip mean and standard deviation over time of each band of a log-mel spectrogram
    (64 bands up to 12 kHz, 25 ms windows every 10 ms) -> logistic regression. Reads the audio, not the codes."""
    import soundfile as sf
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    rate, window, hop, fft = 24000, 600, 240, 1024
    mel = mel_filter_bank(fft // 2 + 1, 64, 0.0, rate / 2, rate, norm="slaney", mel_scale="slaney")
    x, y = {}, {}
    for split in ("train", "validation", "test"):
        folder = os.path.join(work, "audio", "labelled", split)
        rows = [json.loads(line) for line in open(os.path.join(folder, "metadata.jsonl"))]
        features = []  # (2 * 64,) per clip
        for row in rows:
            audio, sr = sf.read(os.path.join(folder, row["file_name"]), dtype="float32")
            if sr != rate:
                raise ValueError(f"{row['file_name']}: expected {rate} Hz audio, got {sr} Hz.")
            hann = window_function(window, "hann")
            spec = spectrogram(audio, hann, window, hop, fft_length=fft, power=2.0, mel_filters=mel, log_mel="log")
            features.append(np.concatenate([spec.mean(axis=1), spec.std(axis=1)]))
        x[split], y[split] = np.stack(features), label_matrix([r["labels"] for r in rows], names)
    return logistic_probe(x, y, names)


def linear_probe(work: str, names: list[str], model: str) -> dict:
    import datasets

    emb = os.path.join(work, "embeddings", model.replace("/", "_"))
    if not os.path.exists(os.path.join(emb, "dataset_dict.json")):
        os.makedirs(os.path.dirname(emb), exist_ok=True)
        run(
            [sys.executable, "-m", "audioformer.training.export_embeddings",
             "--model_name_or_path", pretrain(work, model),
             "--tokenized_dataset", os.path.join(work, "codes", "labelled"), "--output_dir", emb],
            emb + ".log",
        )  # fmt: skip
    dsd = datasets.load_from_disk(emb)
    x = {s: np.asarray(dsd[s]["embedding"], dtype=np.float32) for s in ("train", "validation", "test")}
    y = {s: label_matrix(dsd[s]["labels"], names) for s in x}
    return logistic_probe(x, y, names)


def test_map(run_dir: str, work: str, names: list[str]) -> dict:
    """The scores of `scores()` of a fine-tuned model (the checkpoint chosen on validation)."""
    import torch

    import audioformer.modeling_audioformer  # noqa: F401
    from audioformer.modeling_audioformer import AudioFormerForAudioClassification
    from audioformer.training.collators import pad_code_rows

    model = AudioFormerForAudioClassification.from_pretrained(run_dir).eval()
    if [model.config.id2label[i] for i in range(len(names))] != names:
        raise ValueError(f"{run_dir}: its classes {model.config.id2label} are not {names} in that order.")
    y, predictions = {}, {}
    for split in ("validation", "test"):
        ds = load_split(work, split)
        logits = []
        with torch.no_grad():
            for start in range(0, len(ds), 64):
                batch = pad_code_rows(
                    [{"input_ids": r} for r in ds[start : start + 64]["input_ids"]],
                    codebook_index=None if model.config.is_fused else model.config.codebook_index,
                )
                logits.append(model(**batch).logits.float().numpy())
        y[split], predictions[split] = label_matrix(ds["labels"], names), np.concatenate(logits)
    return scores(y, predictions, names)


# Models without a transformer: name -> (what the table calls it, (work_dir, class names) -> scores and C).
BASELINES = {
    "bag_of_codes_c1": ("bag of codes (C1) + logistic regression", lambda w, n: bag_of_codes(w, [0], n)),
    "bag_of_codes_c1_c4": (
        "bag of codes (C1..C4) + logistic regression",
        lambda w, n: bag_of_codes(w, [0, 1, 2, 3], n),
    ),
    "log_mel": ("log-mel (mean and std of 64 bands) + logistic regression", log_mel),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default=os.path.join(REPO, "real_audio"))
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="Seeds of every FT1 row (default: its own)."
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="Rows to run (names in PROBES and EXPERIMENTS; default: all)."
    )
    parser.add_argument("--threads", type=int, default=1, help="Threads per training process (OMP_NUM_THREADS).")
    args = parser.parse_args(argv)
    rows = [*BASELINES, *PROBES, *EXPERIMENTS]
    unknown = sorted(set(args.only or []) - set(rows))
    if unknown:
        parser.error(f"unknown rows {unknown}; the rows are: {', '.join(rows)}")
    global THREADS
    THREADS = args.threads
    work = os.path.abspath(args.work_dir)
    prepare(work)

    names = sorted({n for row in load_split(work, "train")["labels"] for n in row})
    results_path = os.path.join(work, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    selected = set(args.only if args.only is not None else rows)

    def record(key, label, row, **extra):
        # Instances side by side (other --only rows) share the file: each adds its row under a lock, re-reading what
        # the others added, and replaces the file whole (a reader never sees it half written).
        with open(results_path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.exists(results_path):
                results.update(json.load(open(results_path)))
            results[key] = {"model": label, **{k: round(v, 4) for k, v in row.items()}, **extra}
            with open(results_path + ".tmp", "w") as f:
                json.dump(results, f, indent=2)
            os.replace(results_path + ".tmp", results_path)
        print(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "C"), flush=True)

    for key, (label, baseline) in BASELINES.items():
        if key in selected and key not in results:
            row = baseline(work, names)
            record(key, label, {k: v for k, v in row.items() if k != "C"}, C=row["C"])
    for key, (label, model) in PROBES.items():
        if key in selected and key not in results:
            row = linear_probe(work, names, model)
            record(key, label, {k: v for k, v in row.items() if k != "C"}, C=row["C"])
    for name in EXPERIMENTS:
        if name not in selected:
            continue
        for seed in args.seeds if args.seeds is not None else EXPERIMENTS[name][3]:
            key = f"{name}_seed{seed}"
            if key not in results:
                record(key, EXPERIMENTS[name][0], test_map(fine_tune(work, name, seed), work, names), seed=seed)
    write_table(results, os.path.join(work, "results.md"))


def write_table(results: dict, path: str) -> None:
    """One line per row of the table, in the order the rows are defined: the mean (± standard deviation over the
    seeds, when there are several)."""
    order = [*BASELINES, *PROBES, *EXPERIMENTS]
    groups: dict[str, list] = {}
    for key, row in sorted(results.items(), key=lambda kv: order.index(kv[0].rsplit("_seed", 1)[0])):
        name = key.rsplit("_seed", 1)[0]
        label = EXPERIMENTS[name][0] if name in EXPERIMENTS else PROBES[name][0] if name in PROBES else row["model"]
        groups.setdefault(label, []).append(row)
    columns = ("validation_mAP", "test_mAP", "test_AP_speech")
    lines = ["| model | validation mAP | test mAP | test AP (speech) | runs |", "| --- | --- | --- | --- | --- |"]
    for label, rows in groups.items():
        cells = []
        for column in columns:
            values = np.array([r[column] for r in rows if column in r])
            if len(values) == 0:  # a row recorded before the column existed
                cells.append("-")
            elif len(values) > 1:  # sample standard deviation over the seeds
                cells.append(f"{values.mean():.3f} ± {values.std(ddof=1):.3f}")
            else:
                cells.append(f"{values[0]:.3f}")
        lines.append(f"| {label} | {' | '.join(cells)} | {len(rows)} |")
    open(path, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
