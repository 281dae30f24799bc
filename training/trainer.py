"""Fine-tuning pieces for `Trainer`: FT2's multi-positive contrastive (MPC) loss and weighted sampling.

FT2 (paper 3.3.2, eq. 8-9): the trained anchor model reads codebook C1; frozen pretrained models read C2..CN of
the same clips and provide the positives; the other clips of the batch are the negatives.

    loss = alpha * classification(anchor logits) + (1 - alpha) * mpc_loss(stack([anchor, P2, ..., PN]), tau)

where each feature is the masked mean of the last hidden states (`pooled_output`). The positive models run
under `torch.no_grad` in eval mode, and under the same autocast as the anchor (accelerate wraps only the prepared
model's forward in it, so with bf16 they would otherwise run in float32); they are held by the trainer, not by the
model, so they never enter the optimizer nor the saved checkpoint, and inference uses the anchor alone (the
published model has FT1's size).

Under DDP each process computes MPC on its own batch: the negatives are the other clips of the local batch
(`per_device_train_batch_size - 1` of them), not of the global one; features are not gathered across processes.
Each process's loss is a mean over its clips and DDP averages the gradients, so the update is that of the mean
loss over processes, which is also what the Trainer logs.
"""

from collections.abc import Sequence

import torch
from torch import nn

from audioformer.modeling_audioformer.losses import mpc_loss
from audioformer.modeling_audioformer.modeling_audioformer import AudioFormerModel, codes_and_mask, masked_mean

from .augmentation import CLIP_INDEX_COLUMN
from .checkpointing import AtomicCheckpointTrainer
from .mixup import mixup_draw, mixup_loss
from .optimization import create_layerwise_optimizer
from .sampling import WeightedClipSampler


def load_positive_models(
    paths: Sequence[str],
    anchor_config=None,
    codebook_indices: Sequence[int] | None = None,
    **from_pretrained_kwargs,
) -> list[AudioFormerModel]:
    """Loads the frozen positive models of FT2 (backbones only; an MLM or classification head is dropped).

    Args:
        paths: pretrained AudioFormer checkpoints (folders or Hub ids), one per positive codebook.
        anchor_config: the anchor's config; checks that hidden sizes match and no positive reads the anchor's row.
        codebook_indices: the codebook row each positive reads; default: each checkpoint's `codebook_index` (a fused
            positive reads its `input_codebooks`, which cannot be changed here).

    Returns:
        models in eval mode with `requires_grad=False`.
    """
    if codebook_indices is not None and len(codebook_indices) != len(paths):
        raise ValueError(f"Got {len(paths)} positive models but {len(codebook_indices)} codebook indices.")
    models = []
    for i, path in enumerate(paths):
        model = AudioFormerModel.from_pretrained(path, **from_pretrained_kwargs)
        if codebook_indices is not None and model.config.is_fused:
            raise ValueError(
                f"{path} is a fused model reading codebooks {model.config.input_codebooks}; a codebook row can't be "
                "given for it (--mpc_positive_codebooks is for single-codebook positives)."
            )
        if codebook_indices is not None:  # checked against the data's codebooks by check_positive_models
            model.config.codebook_index = int(codebook_indices[i])
        models.append(freeze(model))
    check_positive_models(models, anchor_config, names=list(paths))
    return models


def check_mpc_settings(alpha: float, temperature: float) -> None:
    """Raises a ValueError for an FT2 weight `alpha` outside [0, 1] (eq. 9) or a temperature `tau` <= 0 (eq. 8)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"mpc_alpha must be in [0, 1], got {alpha}.")
    if temperature <= 0:
        raise ValueError(f"mpc_temperature must be positive, got {temperature}.")


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def check_positive_models(models: Sequence[nn.Module], anchor_config=None, names: Sequence[str] | None = None):
    """Raises a ValueError when a positive model cannot serve as one: another hidden size than the anchor, a
    codebook row the data lacks (the anchor's `num_codebooks`), or the same codebook rows as the anchor or another
    positive reads (the same view of the clip). A fused anchor or positive reads several rows
    (`config.input_codebooks`); single-codebook positives of a fused anchor read rows it also reads, which is allowed:
    their views differ."""
    names = names or [f"positive model {i}" for i in range(len(models))]
    if not models:
        raise ValueError("FT2 needs at least one positive model.")

    def view(config):
        rows = tuple(config.read_codebooks)
        return rows, (f"row {rows[0]}" if len(rows) == 1 else f"rows {list(rows)}")

    seen = {} if anchor_config is None else {view(anchor_config)[0]: "the anchor model"}
    for name, model in zip(names, models):
        config = model.config
        if anchor_config is not None and config.hidden_size != anchor_config.hidden_size:
            raise ValueError(
                f"{name} has hidden_size {config.hidden_size}, the anchor {anchor_config.hidden_size}; "
                "MPC compares their pooled features, which need the same size."
            )
        rows, described = view(config)
        if anchor_config is not None and not all(0 <= k < anchor_config.num_codebooks for k in rows):
            raise ValueError(
                f"{name} reads codebook {described}, but the data has "
                f"{anchor_config.num_codebooks} codebooks (rows 0..{anchor_config.num_codebooks - 1})."
            )
        if rows in seen:
            raise ValueError(
                f"{name} reads codebook {described}, as {seen[rows]} does; give each positive its own row "
                "(--mpc_positive_codebooks)."
            )
        seen[rows] = name


class AudioClassificationTrainer(AtomicCheckpointTrainer):
    """`Trainer` for AudioFormer classification: FT1 as is, FT2 with `positive_models`, optional weighted sampling;
    checkpoints complete or absent (`checkpointing.AtomicCheckpointTrainer`).

    Args (besides `Trainer`'s):
        positive_models: frozen models (e.g. from `load_positive_models`) whose `(B, T, D)` last hidden states
            give the positives; none for FT1.
        mpc_alpha: weight of the classification loss (eq. 9; the paper uses 0.95).
        mpc_temperature: tau of the MPC loss (the paper uses 0.05).
        sample_weights: `(N,)` per-clip weights of the training set (`sampling.inverse_frequency_weights`); the
            training loader then draws N clips with replacement.
        layerwise_lr_decay: factor of layer-wise learning-rate decay (`optimization.layerwise_lr_groups`); None
            gives every parameter the same rate.
        mixup_alpha: mixup on the input embeddings while training (`mixup.py`), lam ~ Beta(alpha, alpha); 0 (the
            default) is off. FT1 only.
    """

    def __init__(
        self,
        *args,
        positive_models: Sequence[nn.Module] | None = None,
        mpc_alpha: float = 0.95,
        mpc_temperature: float = 0.05,
        sample_weights=None,
        layerwise_lr_decay: float | None = None,
        mixup_alpha: float = 0.0,
        **kwargs,
    ):
        self.layerwise_lr_decay = layerwise_lr_decay
        if mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0 (0 = off), got {mixup_alpha}.")
        if mixup_alpha and positive_models:
            raise ValueError("mixup_alpha is for FT1: FT2's positives would read the clips unmixed.")
        self.mixup_alpha = mixup_alpha
        super().__init__(*args, **kwargs)
        check_mpc_settings(mpc_alpha, mpc_temperature)
        # A plain list: the positives must not become sub-modules of anything the Trainer saves or optimizes.
        self.positive_models = [freeze(m).to(self.args.device) for m in (positive_models or [])]
        if self.positive_models:
            check_positive_models(self.positive_models, self.accelerator.unwrap_model(self.model).config)
        self.mpc_alpha = mpc_alpha
        self.mpc_temperature = mpc_temperature
        self.sample_weights = sample_weights
        if (
            sample_weights is not None
            and self.train_dataset is not None
            and len(sample_weights) != len(self.train_dataset)
        ):
            raise ValueError(
                f"sample_weights has {len(sample_weights)} entries for {len(self.train_dataset)} training clips."
            )

    def _get_train_sampler(self, train_dataset=None):
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return WeightedClipSampler(self.sample_weights, seed=seed)

    def create_optimizer(self, model=None):
        if self.layerwise_lr_decay is None or self.optimizer is not None:
            return super().create_optimizer(model)
        self.optimizer = create_layerwise_optimizer(
            self, self.model if model is None else model, self.layerwise_lr_decay
        )
        return self.optimizer

    def _set_signature_columns_if_needed(self):
        # Keep the training rows' index (the seed of fine-tuning augmentation, training/augmentation.py) for the
        # collator, which removes it before the model sees the batch.
        super()._set_signature_columns_if_needed()
        if CLIP_INDEX_COLUMN not in self._signature_columns:
            self._signature_columns.append(CLIP_INDEX_COLUMN)

    @torch.no_grad()
    def positive_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """`(B, K, T)` ids -> one `(B, D)` pooled feature per positive model, each from its own codebook row (a fused
        positive: its rows), computed under the accelerator's autocast (the anchor's mixed precision)."""
        if input_ids.dim() != 3:
            raise ValueError(
                f"FT2 needs input_ids of all codebooks, shape (B, K, T); got shape {tuple(input_ids.shape)}."
            )
        features = []
        with self.accelerator.autocast():
            for model in self.positive_models:
                _, mask = codes_and_mask(input_ids, attention_mask, model.config)
                hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # it picks its rows
                features.append(masked_mean(hidden, mask))
        return features

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.mixup_alpha and model.training:
            batch_size = inputs["input_ids"].shape[0]
            lam, perm = mixup_draw(self.mixup_alpha, batch_size, self.args.seed, self.state.global_step)
            loss, outputs = mixup_loss(model, inputs, lam, perm, core=self.accelerator.unwrap_model(model))
            return (loss, outputs) if return_outputs else loss
        outputs = model(**inputs)
        loss = outputs.loss
        # MPC only while training: evaluation reports the classification loss of the anchor alone, the model
        # that is deployed.
        if self.positive_models and model.training:
            positives = self.positive_features(inputs["input_ids"], inputs.get("attention_mask"))
            features = torch.stack(
                [outputs.pooled_output] + [p.to(outputs.pooled_output.dtype) for p in positives], dim=1
            )  # (B, N, D)
            loss = self.mpc_alpha * loss + (1.0 - self.mpc_alpha) * mpc_loss(features, self.mpc_temperature)
        return (loss, outputs) if return_outputs else loss


__all__ = [
    "AudioClassificationTrainer",
    "load_positive_models",
    "check_positive_models",
    "check_mpc_settings",
    "freeze",
]
