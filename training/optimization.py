"""
Which parameters fine-tuning trains, and at which learning rate: layer-wise learning-rate decay and a frozen backbone
(linear probing).

Layer-wise learning-rate decay (LLRD; ELECTRA, BEiT, and the audio transformers built on them: AST, BEATs, EAT):
the classifier trains at the full learning rate and each layer below it at `decay` times the rate of the layer
above, so the pretrained lower layers move least:

    lr(classifier) = lr,  lr(layer l of L, 0-based) = lr * decay ** (L - l),  lr(embeddings) = lr * decay ** (L + 1)

Weight decay follows `Trainer`'s rule (none on biases and LayerNorm weights). Trainer's scheduler scales every
group's rate by the same factor, so the ratios hold through warm-up and decay.

    >>> groups = layerwise_lr_groups(model, lr=1e-4, decay=0.75, weight_decay=0.01, decay_names=names)
    >>> freeze_backbone(model)   # linear probe: only the classifier trains
"""

import logging
import re

from torch import nn


logger = logging.getLogger(__name__)

_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def layer_id(name: str, num_layers: int) -> int:
    """Depth of a parameter: 0 for the embeddings, `l + 1` for encoder layer `l`, `num_layers + 1` for the rest
    (the classifier or MLM head, and anything outside the backbone)."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if ".embeddings" in f".{name}":  # embeddings.* and embeddings_project.*
        return 0
    return num_layers + 1


def layerwise_lr_groups(
    model: nn.Module, lr: float, decay: float, weight_decay: float, decay_names: set[str] | list[str]
) -> list[dict]:
    """
    Optimizer parameter groups with layer-wise decayed learning rates.

    Args:
        model: an AudioFormer model (parameter names of `RoFormerModel`: `...embeddings.*`, `...encoder.layer.N.*`).
        lr: the learning rate of the top (the classifier).
        decay: factor per layer, in (0, 1]; 1 gives every parameter `lr`.
        weight_decay: applied to the parameters named in `decay_names` (`Trainer.get_decay_parameter_names`).
    Returns:
        groups `{"params", "lr", "weight_decay"}` of the trainable parameters, one per (depth, decayed or not).
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer-wise learning-rate decay must be in (0, 1], got {decay}.")
    num_layers = model.config.num_hidden_layers
    decay_names = set(decay_names)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_id(name, num_layers)
        decayed = name in decay_names
        group = groups.setdefault(
            (depth, decayed),
            {"params": [], "lr": lr * decay ** (num_layers + 1 - depth), "weight_decay": weight_decay * decayed},
        )
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def create_layerwise_optimizer(trainer, model: nn.Module, decay: float):
    """The optimizer `trainer.create_optimizer` would build (`--optim` and its arguments), over LLRD groups."""
    groups = layerwise_lr_groups(
        model, trainer.args.learning_rate, decay, trainer.args.weight_decay, trainer.get_decay_parameter_names(model)
    )
    optimizer_cls, optimizer_kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, model)
    logger.info(
        "Layer-wise learning-rate decay %s: learning rates from %.3g (embeddings) to %.3g (classifier)",
        decay,
        groups[0]["lr"],
        groups[-1]["lr"],
    )
    return optimizer_cls(groups, **optimizer_kwargs)


def _keep_eval(module: nn.Module, args) -> None:
    module.eval()


def freeze_backbone(model: nn.Module) -> nn.Module:
    """
    Linear probing: the backbone (`model.roformer`) gets no gradient and always runs in eval mode (no dropout, so its
    features are those a frozen-feature probe sees); only the classifier trains. Returns the model.
    """
    backbone = model.roformer
    backbone.requires_grad_(False)
    backbone.eval()
    # Trainer calls model.train() before every step; the hook puts the frozen backbone back in eval mode.
    backbone.register_forward_pre_hook(_keep_eval)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("Backbone frozen: %d trainable parameters (the classifier).", trainable)
    return model


__all__ = ["layerwise_lr_groups", "create_layerwise_optimizer", "freeze_backbone", "layer_id"]
