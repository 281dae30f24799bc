"""AudioFormer: RoFormer over EnCodec acoustic codes (paper sections 3.2-3.3).

The parameter names are those of transformers' `RoFormerModel` / `RoFormerForMaskedLM`, so their state dicts load as
they are. What differs is how the network runs: attention goes through transformers' attention interface
(`scaled_dot_product_attention` by default), the rotary tables are computed once per forward for all layers, and
inputs may carry all codebooks `(batch, num_codebooks, seq_len)`, of which the model reads `config.codebook_index`.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_audioformer import AudioFormerConfig
from .losses import lsep_loss


def select_codebook(input_ids: torch.Tensor, config: AudioFormerConfig) -> torch.Tensor:
    """`(B, K, T)` codes of all codebooks -> `(B, T)` row `config.codebook_index`; `(B, T)` passes through."""
    if input_ids.dim() == 2:
        return input_ids
    if input_ids.dim() != 3:
        raise ValueError(
            f"input_ids must have shape (batch, seq_len) or (batch, num_codebooks, seq_len), got {tuple(input_ids.shape)}."
        )
    if config.codebook_index >= input_ids.shape[1]:
        raise ValueError(
            f"This model reads codebook {config.codebook_index} (config.codebook_index) but input_ids has only "
            f"{input_ids.shape[1]} codebooks (shape {tuple(input_ids.shape)})."
        )
    return input_ids[:, config.codebook_index]


class AudioFormerSinusoidalPositionalEmbedding(nn.Embedding):
    """RoFormer's frozen sinusoid table `(max_positions, head_size)`: sines in the first half, cosines in the second.

    Kept as a (frozen) parameter with RoFormer's name so RoFormer checkpoints map one to one.
    """

    def __init__(self, num_positions: int, embedding_dim: int):
        super().__init__(num_positions, embedding_dim, _freeze=True)

    def create_weight(self) -> torch.Tensor:
        num_positions, dim = self.weight.shape
        position = torch.arange(num_positions, dtype=torch.float64)[:, None]
        inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # theta_i, paper eq. 1
        angle = position * inv_freq  # (P, dim / 2)
        return torch.cat([angle.sin(), angle.cos()], dim=-1).to(self.weight.dtype)

    def rotary_tables(self, seq_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """`cos, sin` of shape `(seq_len, head_size)`, each angle repeated for the two members of its pair."""
        if seq_len > self.weight.shape[0]:
            raise ValueError(
                f"Sequence length {seq_len} is longer than max_position_embeddings={self.weight.shape[0]}."
            )
        sin, cos = self.weight[:seq_len].chunk(2, dim=-1)
        return cos.repeat_interleave(2, dim=-1).to(dtype), sin.repeat_interleave(2, dim=-1).to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair `(x_{2i}, x_{2i+1})` by angle `t * theta_i` (paper eq. 2).

    Args:
        x: `(B, H, T, D)` queries or keys. cos, sin: `(T, D)`.
    """
    x_pairs = x.unflatten(-1, (-1, 2))
    rotated_half = torch.stack((-x_pairs[..., 1], x_pairs[..., 0]), dim=-1).flatten(-2)  # [-x1, x0, -x3, x2, ...]
    return x * cos + rotated_half * sin


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scaling + mask) v, written out; returns `(B, T, H, D)` and the `(B, H, T, T)` weights."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class AudioFormerEmbeddings(nn.Module):
    """Token + token-type embeddings, LayerNorm, dropout (no absolute positions: RoPE encodes them)."""

    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if token_type_ids is None:
            # All codes are type 0: add row 0 directly instead of looking up a (B, T) tensor of zeros.
            embeddings = inputs_embeds + self.token_type_embeddings.weight[0]
        else:
            embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class AudioFormerSelfAttention(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.config = config
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.scaling = self.attention_head_size**-0.5
        self.is_causal = False
        self.rotary_value = config.rotary_value
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                rotary: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(B, T, hidden)` -> `(B, T, hidden)` and the attention weights (eager only)."""
        head_shape = (*hidden_states.shape[:-1], self.num_attention_heads, self.attention_head_size)
        query = self.query(hidden_states).view(head_shape).transpose(1, 2)  # (B, H, T, D)
        key = self.key(hidden_states).view(head_shape).transpose(1, 2)
        value = self.value(hidden_states).view(head_shape).transpose(1, 2)

        cos, sin = rotary
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        if self.rotary_value:
            value = apply_rotary(value, cos, sin)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self, query, key, value, attention_mask,
            dropout=self.dropout.p if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
        )
        return attn_output.reshape(*hidden_states.shape[:-1], -1), attn_weights


class AudioFormerSelfOutput(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class AudioFormerAttention(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.self = AudioFormerSelfAttention(config)
        self.output = AudioFormerSelfOutput(config)

    def forward(self, hidden_states, attention_mask, rotary):
        attn_output, attn_weights = self.self(hidden_states, attention_mask, rotary)
        return self.output(attn_output, hidden_states), attn_weights


class AudioFormerIntermediate(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class AudioFormerOutput(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class AudioFormerLayer(GradientCheckpointingLayer):
    """One post-norm BERT block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.attention = AudioFormerAttention(config)
        self.intermediate = AudioFormerIntermediate(config)
        self.output = AudioFormerOutput(config)

    def forward(self, hidden_states, attention_mask=None, rotary=None):
        attention_output, attn_weights = self.attention(hidden_states, attention_mask, rotary)
        layer_output = self.output(self.intermediate(attention_output), attention_output)
        return layer_output, attn_weights


class AudioFormerEncoder(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.config = config
        self.embed_positions = AudioFormerSinusoidalPositionalEmbedding(
            config.max_position_embeddings, config.hidden_size // config.num_attention_heads
        )
        self.layer = nn.ModuleList([AudioFormerLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(self, hidden_states, attention_mask=None, output_attentions=False, output_hidden_states=False):
        rotary = self.embed_positions.rotary_tables(hidden_states.shape[1], hidden_states.dtype)  # once for all layers
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer_module in self.layer:
            hidden_states, attn_weights = layer_module(hidden_states, attention_mask, rotary)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (attn_weights,)
        return BaseModelOutput(last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions)


class AudioFormerPredictionHeadTransform(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class AudioFormerLMPredictionHead(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.transform = AudioFormerPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size, bias=True)  # weight tied to the embeddings
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class AudioFormerOnlyMLMHead(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.predictions = AudioFormerLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class AudioFormerPreTrainedModel(PreTrainedModel):
    config_class = AudioFormerConfig
    config: AudioFormerConfig
    base_model_prefix = "roformer"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True
    _no_split_modules = ["AudioFormerLayer"]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, AudioFormerSinusoidalPositionalEmbedding):
            with torch.no_grad():
                module.weight.copy_(module.create_weight())
        elif isinstance(module, AudioFormerLMPredictionHead):
            with torch.no_grad():
                module.bias.zero_()


class AudioFormerModel(AudioFormerPreTrainedModel):
    """The bare AudioFormer encoder: code ids -> contextual features `(B, T, hidden_size)`."""

    def __init__(self, config: AudioFormerConfig):
        super().__init__(config)
        self.embeddings = AudioFormerEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = AudioFormerEncoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        r"""
        Args:
            input_ids: `(B, T)` code ids, or `(B, K, T)` ids of all codebooks as the feature extractor returns them
                (the model reads row `config.codebook_index`).
            attention_mask: `(B, T)`, 1 for real positions and 0 for padding. If omitted, positions whose id is
                `config.pad_token_id` are padding.

        Returns:
            `BaseModelOutput` with `last_hidden_state` `(B, T, hidden_size)`.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        if output_attentions and self.config._attn_implementation != "eager":
            raise ValueError(
                "output_attentions=True needs the attention weights, which only attn_implementation='eager' computes; "
                f"this model runs {self.config._attn_implementation!r}. Load it with attn_implementation='eager'."
            )
        if input_ids is not None:
            input_ids = select_codebook(input_ids, self.config)
            if attention_mask is None and self.config.pad_token_id is not None:
                attention_mask = (input_ids != self.config.pad_token_id).long()
        if attention_mask is not None and attention_mask.dim() == 3:  # (B, K, T) masks: every row is the same
            attention_mask = attention_mask[:, self.config.codebook_index]

        embedding_output = self.embeddings(input_ids=input_ids, inputs_embeds=inputs_embeds, token_type_ids=token_type_ids)
        if hasattr(self, "embeddings_project"):
            embedding_output = self.embeddings_project(embedding_output)

        extended_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        outputs = self.encoder(
            embedding_output, extended_mask,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        if not return_dict:
            return outputs.to_tuple()
        return outputs


class AudioFormerForMaskedLM(AudioFormerPreTrainedModel):
    """AudioFormer with the MLM head of pretraining (paper 3.2); output embeddings tied to the input ones."""

    _tied_weights_keys = {
        "cls.predictions.decoder.bias": "cls.predictions.bias",
        "cls.predictions.decoder.weight": "roformer.embeddings.word_embeddings.weight",
    }

    def __init__(self, config: AudioFormerConfig):
        super().__init__(config)
        self.roformer = AudioFormerModel(config)
        self.cls = AudioFormerOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput | tuple:
        r"""
        Args:
            labels: `(B, T)` (or `(B, K, T)`, row `codebook_index` is used) original ids at masked positions and
                -100 elsewhere; the loss is the cross-entropy over masked positions only.

        Returns:
            `MaskedLMOutput` with `logits` `(B, T, vocab_size)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.roformer(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
        )
        prediction_scores = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            labels = select_codebook(labels, self.config)
            loss = F.cross_entropy(prediction_scores.view(-1, self.config.vocab_size).float(), labels.reshape(-1),
                                   ignore_index=-100)
        if not return_dict:
            output = (prediction_scores,) + outputs.to_tuple()[1:]
            return ((loss,) + output) if loss is not None else output
        return MaskedLMOutput(loss=loss, logits=prediction_scores, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


@dataclass
class AudioFormerClassifierOutput(ModelOutput):
    """
    Args:
        loss: scalar classification loss, when `labels` were given.
        logits: `(B, num_labels)` scores before softmax / sigmoid.
        pooled_output: `(B, hidden_size)` mean of the last hidden states over non-padding positions (paper 4.2);
            the feature the MPC loss of FT2 compares.
        hidden_states, attentions: per layer, when asked for.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pooled_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """`(B, T, D)`, `(B, T)` -> `(B, D)`: the mean over positions where the mask is 1."""
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class AudioFormerForAudioClassification(AudioFormerPreTrainedModel):
    """AudioFormer with a mean-pooling classification head (paper 3.3, FT1).

    Single-label problems use cross-entropy (eq. 5); multi-label ones LSEP (eq. 7) or, with
    `config.multi_label_loss="bce"`, binary cross-entropy (eq. 6).
    """

    def __init__(self, config: AudioFormerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roformer = AudioFormerModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AudioFormerClassifierOutput | tuple:
        r"""
        Args:
            labels: `(B,)` class indices (single-label) or `(B, num_labels)` multi-hot floats (multi-label).

        Returns:
            `AudioFormerClassifierOutput` with `logits` `(B, num_labels)` and `pooled_output` `(B, hidden_size)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if input_ids is not None:
            input_ids = select_codebook(input_ids, self.config)
            if attention_mask is None and self.config.pad_token_id is not None:
                attention_mask = (input_ids != self.config.pad_token_id).long()
        if attention_mask is not None and attention_mask.dim() == 3:
            attention_mask = attention_mask[:, self.config.codebook_index]
        outputs = self.roformer(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
        )
        pooled_output = masked_mean(outputs.last_hidden_state, attention_mask)
        logits = self.classifier(self.dropout(pooled_output))

        loss = None
        if labels is not None:
            loss = self.classification_loss(logits, labels)
        if not return_dict:
            output = (logits, pooled_output) + outputs.to_tuple()[1:]
            return ((loss,) + output) if loss is not None else output
        return AudioFormerClassifierOutput(loss=loss, logits=logits, pooled_output=pooled_output,
                                           hidden_states=outputs.hidden_states, attentions=outputs.attentions)

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of `config.problem_type` (inferred from the labels the first time, as transformers does)."""
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int) and labels.dim() == 1:
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        labels = labels.to(logits.device)
        if self.config.problem_type == "regression":
            return F.mse_loss(logits.squeeze(-1).float(), labels.float())
        if self.config.problem_type == "single_label_classification":
            return F.cross_entropy(logits.float(), labels.view(-1))
        if labels.shape != logits.shape:
            raise ValueError(
                f"Multi-label classification needs multi-hot labels of shape {tuple(logits.shape)} "
                f"(batch, num_labels), got {tuple(labels.shape)}."
            )
        if self.config.multi_label_loss == "bce":
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return lsep_loss(logits, labels)


# The name transformers' text-classification mappings and `run_classification`-style scripts look for.
AudioFormerForSequenceClassification = AudioFormerForAudioClassification

__all__ = [
    "AudioFormerPreTrainedModel",
    "AudioFormerModel",
    "AudioFormerForMaskedLM",
    "AudioFormerForAudioClassification",
    "AudioFormerForSequenceClassification",
    "AudioFormerClassifierOutput",
    "masked_mean",
    "select_codebook",
]
