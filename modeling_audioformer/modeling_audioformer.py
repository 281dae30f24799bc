"""AudioFormer: RoFormer over EnCodec acoustic codes (paper sections 3.2-3.3).

The parameter names are those of transformers' `RoFormerModel` / `RoFormerForMaskedLM`, so their state dicts load as
they are, and the outputs agree with RoFormer's on real (non-padding) positions. What differs is how the network runs:

- a padded batch is packed (`PackedTokens`): embeddings, projections, feed-forward blocks and LayerNorms run on the
  real tokens only, `(num_real_tokens, hidden)`. Padding positions of the returned hidden states are therefore 0, not
  RoFormer's (meaningless) values there;
- attention goes through transformers' attention interface. The `"sdpa_per_clip"` implementation registered below
  (the default on machines without an accelerator) attends clip by clip on the packed tokens, with no mask; the
  others (`"sdpa"`, the default with an accelerator, `"eager"`, ...) attend over the padded `(batch, heads, seq_len,
  head_size)` layout with a padding mask. `output_attentions=True` runs `"eager"` for that call (the only one that
  computes the weights);
- under `torch.compile` / `torch.export` the batch stays padded (packing has data-dependent shapes): every position
  runs through the token-wise layers, attention masks the padding and the outputs are zeroed there, which gives the
  same results;
- query, key and value are each their module's call (`self.query(x)`, ...: quantizers, LoRA, pruning and hooks that
  swap or wrap those modules see them used), the rotary tables are computed once per forward as complex numbers, and
  a batch without padding attends with no mask at all;
- inputs may carry all codebooks `(batch, num_codebooks, seq_len)`, of which the model reads `config.codebook_index`.
"""

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, bidirectional_mask_function
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_audioformer import AudioFormerConfig
from .losses import bce_loss, lsep_loss


# The attention implementation that attends clip by clip on packed real tokens (registered at the end of this part).
PER_CLIP_SDPA = "sdpa_per_clip"


def select_codebook(input_ids: torch.Tensor, config: AudioFormerConfig) -> torch.Tensor:
    """The rows the model reads: `(B, K, T)` codes of all codebooks -> `(B, T)` row `config.codebook_index`, or for
    a fused model (`config.input_codebooks`) `(B, len(input_codebooks), T)` rows `input_codebooks`; a `(B, T)` input
    passes through a single-codebook model."""
    if input_ids.dim() == 2 and not config.is_fused:
        return input_ids
    if input_ids.dim() != 3:
        expected = (
            "(batch, num_codebooks, seq_len)"
            if config.is_fused
            else "(batch, seq_len) or (batch, num_codebooks, seq_len)"
        )
        reads = f" (this model reads codebooks {config.input_codebooks})" if config.is_fused else ""
        raise ValueError(f"input_ids must have shape {expected}{reads}, got {tuple(input_ids.shape)}.")
    rows = config.read_codebooks
    if max(rows) >= input_ids.shape[1]:
        field = "config.input_codebooks" if config.is_fused else "config.codebook_index"
        raise ValueError(
            f"This model reads codebook {max(rows)} ({field}) but input_ids has only {input_ids.shape[1]} codebooks "
            f"(shape {tuple(input_ids.shape)})."
        )
    if config.is_fused:
        return input_ids[:, rows]
    return input_ids[:, config.codebook_index]


def codes_and_mask(
    input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, config: AudioFormerConfig
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The `(B, T)` codebook row the model reads (a fused model: its `(B, len(input_codebooks), T)` rows) and a
    `(B, T)` bool mask, True at real positions.

    `attention_mask` may be `(B, T)` or `(B, K, T)`, of any dtype (0 = padding); without one, positions whose id is
    `config.pad_token_id` are padding.
    """
    if input_ids is not None:
        input_ids = select_codebook(input_ids, config)
        if attention_mask is None and config.pad_token_id is not None:
            attention_mask = (input_ids[:, 0] if config.is_fused else input_ids) != config.pad_token_id
    if attention_mask is None:
        return input_ids, None
    if attention_mask.dim() == 3:  # (B, K, T) masks: every row is the same
        attention_mask = attention_mask[:, config.codebook_index]
    return input_ids, attention_mask.bool()


class PackedTokens:
    """Where the real tokens of a padded `(batch_size, seq_len)` batch are, to pack them as `(N, ...)` for the
    token-wise layers and to unpack them into the padded `(batch_size, seq_len, ...)` layout.

    Attributes:
        mask: `(B, T)` bool, True at real positions; None when the batch has no padding.
        indices: `(N,)` flat positions `b * seq_len + t` of the real tokens; None when every position is packed
            (no padding, or padding kept under `torch.compile` / `torch.export`): packing is then a free reshape.
    """

    def __init__(
        self, batch_size: int, seq_len: int, mask: torch.Tensor | None = None, indices: torch.Tensor | None = None
    ):
        self.batch_size, self.seq_len, self.mask, self.indices = batch_size, seq_len, mask, indices

    @classmethod
    def from_mask(
        cls, attention_mask: torch.Tensor | None, batch_size: int, seq_len: int, keep_padding: bool = False
    ) -> "PackedTokens":
        """`keep_padding`: pack every position (no data-dependent shapes, for compiled or exported graphs)."""
        if attention_mask is None:
            return cls(batch_size, seq_len)
        if keep_padding:
            return cls(batch_size, seq_len, mask=attention_mask)
        if bool(attention_mask.all()):
            return cls(batch_size, seq_len)
        return cls(batch_size, seq_len, attention_mask, attention_mask.reshape(-1).nonzero().squeeze(-1))

    @cached_property
    def clip_lengths(self) -> list[int]:
        """Real tokens per clip, in packed order (the clips' tokens are consecutive)."""
        if self.mask is None:
            return [self.seq_len] * self.batch_size
        return self.mask.sum(dim=1).tolist()

    @cached_property
    def positions(self) -> torch.Tensor | None:
        """`(N,)` position `t` of each packed token; None when every position is packed."""
        return None if self.indices is None else self.indices % self.seq_len

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, ...)` -> `(N, ...)`: the real tokens only."""
        x = x.reshape(self.batch_size * self.seq_len, *x.shape[2:])
        return x if self.indices is None else x.index_select(0, self.indices)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, ...)` -> `(B, T, ...)` with zeros at padding positions."""
        if self.indices is not None:
            x = x.new_zeros(self.batch_size * self.seq_len, *x.shape[1:]).index_copy(0, self.indices, x)
        x = x.view(self.batch_size, self.seq_len, *x.shape[1:])
        if self.indices is None and self.mask is not None:  # padding kept: zero it
            x = torch.where(self.mask.view(*self.mask.shape, *[1] * (x.dim() - 2)), x, 0)
        return x


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scaling + mask) v, written out; `(B, H, T, D)` inputs -> `(B, T, H, D)` and the
    `(B, H, T, T)` weights."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def sdpa_per_clip_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    clip_lengths: list[int] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of each clip over its own tokens, for a batch packed as one sequence of its real tokens.

    A padded batch's attention costs `B * T^2`; clip by clip it costs `sum(length^2)` (about half for lengths spread
    over [T/4, T]), one `scaled_dot_product_attention` call per clip. That pays on CPU; on an accelerator one batched
    call (`"sdpa"`) keeps the device busier.

    Args:
        query, key, value: `(1, H, N, D)`, the clips' tokens one after the other, `N = sum(clip_lengths)`.
        attention_mask: unused (the clip boundaries are the mask).
        clip_lengths: tokens per clip.

    Returns:
        `(1, N, H, D)` (the attention interface's layout) and no weights.
    """
    if clip_lengths is None:
        raise ValueError(f"{PER_CLIP_SDPA!r} attention needs `clip_lengths`: it attends over packed clips.")
    outputs = []
    for clip_query, clip_key, clip_value in zip(*(x.split(clip_lengths, dim=2) for x in (query, key, value))):
        if clip_query.shape[2] == 0:  # a clip of padding only has no tokens to attend from
            outputs.append(clip_query)
            continue
        outputs.append(
            F.scaled_dot_product_attention(clip_query, clip_key, clip_value, dropout_p=dropout, scale=scaling)
        )
    return torch.cat(outputs, dim=2).transpose(1, 2), None


AttentionInterface.register(PER_CLIP_SDPA, sdpa_per_clip_attention_forward)


def padding_attention_mask(
    attention_mask: torch.Tensor, attn_implementation: str, dtype: torch.dtype
) -> torch.Tensor | None:
    """`(B, T)` bool -> the `(B, 1, T, T)` mask transformers' mask interface builds for `attn_implementation` (bool
    for sdpa, additive for eager), or None for a registered implementation without one (as transformers does)."""
    if attn_implementation not in ALL_MASK_ATTENTION_FUNCTIONS:
        return None
    batch_size, seq_len = attention_mask.shape
    return ALL_MASK_ATTENTION_FUNCTIONS[attn_implementation](
        batch_size=batch_size,
        q_length=seq_len,
        kv_length=seq_len,
        q_offset=0,
        kv_offset=0,
        mask_function=bidirectional_mask_function,
        attention_mask=attention_mask,
        allow_is_causal_skip=False,
        allow_is_bidirectional_skip=False,
        dtype=dtype,
        use_vmap=False,
        device=attention_mask.device,
    )


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

    def rotary_tables(self, seq_len: int) -> torch.Tensor:
        """`exp(i * t * theta_j)`: complex64 `(seq_len, head_size / 2)`, one entry per position and pair; during ONNX
        export (ONNX has no complex tensors) the same as real `(seq_len, head_size / 2, 2)` (cos, sin) pairs."""
        if seq_len > self.weight.shape[0]:
            raise ValueError(
                f"Sequence length {seq_len} is longer than max_position_embeddings={self.weight.shape[0]}."
            )
        sin, cos = self.weight[:seq_len].float().chunk(2, dim=-1)
        if torch.onnx.is_in_onnx_export():
            return torch.stack([cos, sin], dim=-1)
        return torch.complex(cos, sin)


def apply_rotary(x: torch.Tensor, rotary: torch.Tensor) -> torch.Tensor:
    """Rotate each pair `(x_{2j}, x_{2j+1})` by angle `t * theta_j` (paper eq. 2) as the complex product
    `(x_{2j} + i x_{2j+1}) * exp(i t theta_j)`, in float32.

    Args:
        x: `(..., head_size)` queries or keys whose position `t` is the dimension `rotary` broadcasts against.
        rotary: complex `(..., head_size / 2)` from `rotary_tables`, broadcastable to `x`'s pairs (or its real
            `(..., head_size / 2, 2)` (cos, sin) form, in ONNX export).
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    if not rotary.is_complex():  # the ONNX graph's real arithmetic
        (cos, sin), (even, odd) = rotary.unbind(-1), pairs.unbind(-1)
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2).to(x.dtype)
    # One complex multiply instead of RoFormer's stack / interleave of sin and cos: fewer kernels and temporaries.
    return torch.view_as_real(torch.view_as_complex(pairs) * rotary).flatten(-2).to(x.dtype)


class AudioFormerEmbeddings(nn.Module):
    """Token + token-type embeddings, LayerNorm, dropout (no absolute positions: RoPE encodes them).

    A fused model (`config.input_codebooks`, K codebooks) embeds a frame as the sum of one embedding per codebook, as
    codec language models embed residual codes. Its `word_embeddings` is one table of `K * vocab_size` rows, codebook
    j's ids offset by `j * vocab_size`: one lookup for all codebooks, each MLM head ties to its codebook's slice, and
    slice 0 has the layout of a single-codebook table. `<BOA>` / `<EOA>` / `<PAD>` / `<MASK>` keep their ids in every
    codebook (their frame embedding is the sum of the K special rows).
    """

    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.num_input_codebooks = len(config.read_codebooks) if config.is_fused else 0
        self.vocab_size = config.vocab_size
        num_embeddings = config.vocab_size * max(self.num_input_codebooks, 1)
        self.word_embeddings = nn.Embedding(num_embeddings, config.embedding_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`input_ids` `(..., )` ids, or `(..., K)` one id per input codebook for a fused model; or `inputs_embeds`
        `(..., embedding_size)` -> `(..., embedding_size)`."""
        if inputs_embeds is None and self.num_input_codebooks:
            if input_ids.shape[-1] != self.num_input_codebooks:
                raise ValueError(
                    f"A fused model embeds {self.num_input_codebooks} codebooks per frame, got ids of shape "
                    f"{tuple(input_ids.shape)}."
                )
            # One lookup per codebook, accumulated: a (..., K, E) temporary would cost K times the embeddings' memory.
            inputs_embeds = self.word_embeddings(input_ids[..., 0])
            for j in range(1, self.num_input_codebooks):
                inputs_embeds = inputs_embeds + self.word_embeddings(input_ids[..., j] + j * self.vocab_size)
        elif inputs_embeds is None:
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

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary: torch.Tensor,
        tokens: PackedTokens,
        attention_mask: torch.Tensor | None,
        attn_implementation: str,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Packed `(N, hidden)` tokens -> `(N, hidden)`, and the `(B, H, T, T)` attention weights (eager only).

        `rotary`: `(T, D / 2)`, or `(N, D / 2)` (one per packed token) for `"sdpa_per_clip"`; `attention_mask`: the
        padded layout's mask for `attn_implementation`.
        """
        # Each projection through its own module's forward (never its `.weight`): a quantized, LoRA-wrapped or hooked
        # `query` / `key` / `value` is then what runs.
        heads = (self.num_attention_heads, self.attention_head_size)
        query = self.query(hidden_states).unflatten(-1, heads)  # (N, H, D)
        key = self.key(hidden_states).unflatten(-1, heads)
        value = self.value(hidden_states).unflatten(-1, heads)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(attn_implementation, eager_attention_forward)
        dropout = self.dropout.p if self.training else 0.0

        if attn_implementation == PER_CLIP_SDPA:  # packed: one sequence of clips, (1, H, N, D)
            query, key, value = (
                x.transpose(0, 1).unsqueeze(0) for x in self.rotate(query, key, value, rotary[:, None])
            )
            attn_output, _ = attention(
                self, query, key, value, None, dropout=dropout, scaling=self.scaling, clip_lengths=tokens.clip_lengths
            )
            return attn_output.flatten(-2).squeeze(0), None

        # (B, T, H, D) -> (B, H, T, D) each
        query, key, value = (tokens.unpack(x) for x in (query, key, value))
        query, key, value = (x.transpose(1, 2) for x in self.rotate(query, key, value, rotary[:, None]))
        attn_output, attn_weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=self.scaling,
            is_causal=False,
        )
        return tokens.pack(attn_output.flatten(-2)), attn_weights

    def rotate(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, rotary: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values `(..., H, D)` -> the same, queries and keys rotated (and values if
        `config.rotary_value`). `rotary`: `(..., 1, D / 2)`, broadcastable to their pairs."""
        value = apply_rotary(value, rotary) if self.rotary_value else value
        return apply_rotary(query, rotary), apply_rotary(key, rotary), value


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

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary: torch.Tensor,
        tokens: PackedTokens,
        attention_mask: torch.Tensor | None,
        attn_implementation: str,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_output, attn_weights = self.self(hidden_states, rotary, tokens, attention_mask, attn_implementation)
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
    """One post-norm BERT block on packed tokens `(N, hidden)`: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.attention = AudioFormerAttention(config)
        self.intermediate = AudioFormerIntermediate(config)
        self.output = AudioFormerOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary: torch.Tensor,
        tokens: PackedTokens,
        attention_mask: torch.Tensor | None,
        attn_implementation: str,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_output, attn_weights = self.attention(
            hidden_states, rotary, tokens, attention_mask, attn_implementation
        )
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

    def forward(
        self,
        hidden_states: torch.Tensor,
        tokens: PackedTokens,
        attention_mask: torch.Tensor | None,
        attn_implementation: str,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """Packed `(N, hidden)` tokens -> `BaseModelOutput` of `(B, T, hidden)` states, 0 at padding."""
        rotary = self.embed_positions.rotary_tables(tokens.seq_len)  # once for all layers
        if attn_implementation == PER_CLIP_SDPA and tokens.positions is not None:
            rotary = rotary[tokens.positions]  # one per packed token
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer_module in self.layer:
            if output_hidden_states:
                # The next layer reads the returned states, so gradients reach what the caller holds (retain_grad,
                # attribution methods); a copy off that path would get none.
                padded = tokens.unpack(hidden_states)
                all_hidden_states += (padded,)
                hidden_states = tokens.pack(padded)
            hidden_states, attn_weights = layer_module(
                hidden_states, rotary, tokens, attention_mask, attn_implementation
            )
            if output_attentions:
                all_attentions += (attn_weights,)
        last_hidden_state = tokens.unpack(hidden_states)
        if output_hidden_states:
            all_hidden_states += (last_hidden_state,)
        return BaseModelOutput(
            last_hidden_state=last_hidden_state, hidden_states=all_hidden_states, attentions=all_attentions
        )


class AudioFormerPredictionHeadTransform(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class AudioFormerLMPredictionHead(nn.Module):
    """`(..., hidden)` -> `(..., vocab_size)` logits; a fused model's K codebooks each have their own output head,
    `(..., K, vocab_size)`: codebook j's decoder is its slice of the (tied) embedding table and its own bias, after
    the transform they share."""

    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.num_input_codebooks = len(config.read_codebooks) if config.is_fused else 0
        num_outputs = config.vocab_size * max(self.num_input_codebooks, 1)
        self.transform = AudioFormerPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.embedding_size, num_outputs, bias=True)  # weight tied to the embeddings
        self.bias = nn.Parameter(torch.zeros(num_outputs))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.transform(hidden_states))
        if self.num_input_codebooks:
            logits = logits.unflatten(-1, (self.num_input_codebooks, -1))  # (..., K * V) -> (..., K, V)
        return logits


class AudioFormerOnlyMLMHead(nn.Module):
    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.predictions = AudioFormerLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


# Every Auto class an AudioFormer folder can be loaded with as remote code; all of them live in this file.
AUTO_MAP = {
    "AutoConfig": "configuration_audioformer.AudioFormerConfig",
    "AutoModel": "modeling_audioformer.AudioFormerModel",
    "AutoModelForMaskedLM": "modeling_audioformer.AudioFormerForMaskedLM",
    "AutoModelForAudioClassification": "modeling_audioformer.AudioFormerForAudioClassification",
    "AutoModelForSequenceClassification": "modeling_audioformer.AudioFormerForAudioClassification",
}


def has_accelerator() -> bool:
    """Whether this machine has an accelerator (CUDA, XPU, MPS, ...) for torch."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


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
    # The losses are batch means: Trainer must not rescale them by the token count of the whole (DDP) batch, which it
    # does for any forward that takes **kwargs unless told otherwise.
    accepts_loss_kwargs = False

    def get_correct_attn_implementation(self, requested_attention: str | None, is_init_check: bool = False) -> str:
        """transformers' choice, except the default on a machine without an accelerator: `"sdpa_per_clip"`, which
        skips the padding's share of the attention work. Chosen once, when the model is built or loaded; pass
        `attn_implementation=` (or call `set_attn_implementation`) to choose otherwise."""
        if requested_attention is None and not has_accelerator():
            requested_attention = PER_CLIP_SDPA
        return super().get_correct_attn_implementation(requested_attention, is_init_check)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        # transformers writes into `auto_map` only the Auto class of the saved model; a remote-code user also loads
        # the encoder of a classifier (`AutoModel`) or a classifier from a pretraining checkpoint. The code files are
        # copied (hence the map is valid) only for classes registered with `register_for_auto_class`.
        if self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
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

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        Args:
            input_ids: `(B, T)` code ids, or `(B, K, T)` ids of all codebooks as the feature extractor returns them
                (the model reads row `config.codebook_index`; a fused model rows `config.input_codebooks`, and needs
                this layout).
            attention_mask: `(B, T)` (or `(B, K, T)`), 1 / True for real positions and 0 / False for padding, any
                dtype. If omitted, positions whose id is `config.pad_token_id` are padding.
            inputs_embeds: `(B, T, embedding_size)`, instead of `input_ids`.
            output_attentions: return the `(B, H, T, T)` attention weights of each layer; computed by `"eager"`
                attention for this call whatever `attn_implementation` the model has.
            output_hidden_states: return the `(B, T, hidden_size)` states after the embeddings and after each layer;
                they are on the gradient path of the outputs.
            return_dict: False for a tuple (None fields left out).

        Returns:
            `BaseModelOutput` with `last_hidden_state` `(B, T, hidden_size)`. Only real positions are computed: the
            hidden states (and `hidden_states` after each layer) are 0 at padding positions.
        """
        unsupported = set(kwargs) - {"num_items_in_batch"}  # the losses are batch means: nothing to rescale
        if unsupported:
            raise TypeError(f"{type(self).__name__}.forward() got unsupported arguments {sorted(unsupported)}.")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        input_ids, attention_mask = codes_and_mask(input_ids, attention_mask, self.config)
        if input_ids is not None and self.config.is_fused:
            input_ids = input_ids.transpose(1, 2)  # (B, K, T) -> frames (B, T, K): pack and embed frame by frame
        batch_size, seq_len = input_ids.shape[:2] if input_ids is not None else inputs_embeds.shape[:2]
        if attention_mask is not None and attention_mask.shape != (batch_size, seq_len):
            raise ValueError(
                f"attention_mask must have shape (batch, seq_len) = {(batch_size, seq_len)} (or (batch, "
                f"num_codebooks, seq_len)), got {tuple(attention_mask.shape)}."
            )

        # Packing real tokens has data-dependent shapes, which compiled and exported graphs cannot hold.
        compiling = torch.compiler.is_compiling()
        tokens = PackedTokens.from_mask(attention_mask, batch_size, seq_len, keep_padding=compiling)
        attn_implementation = self.config._attn_implementation
        if output_attentions:
            attn_implementation = "eager"  # the only implementation that computes the weights
        elif attn_implementation == PER_CLIP_SDPA and (compiling or tokens.mask is None):
            attn_implementation = "sdpa"  # one batched call: no padding to skip, or shapes must stay static

        # Everything but attention is token-wise, so it runs on the packed tokens only.
        embedding_output = self.embeddings(
            input_ids=tokens.pack(input_ids) if input_ids is not None else None,
            inputs_embeds=tokens.pack(inputs_embeds) if inputs_embeds is not None else None,
            token_type_ids=tokens.pack(token_type_ids) if token_type_ids is not None else None,
        )  # (N, embedding_size)
        if hasattr(self, "embeddings_project"):
            embedding_output = self.embeddings_project(embedding_output)
        padding_mask = None
        if tokens.mask is not None and attn_implementation != PER_CLIP_SDPA:
            padding_mask = padding_attention_mask(tokens.mask, attn_implementation, embedding_output.dtype)
        return self.encoder(
            embedding_output,
            tokens,
            padding_mask,
            attn_implementation,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )


class AudioFormerForMaskedLM(AudioFormerPreTrainedModel):
    """AudioFormer with the MLM head of pretraining (paper 3.2); output embeddings tied to the input ones."""

    _tied_weights_keys = {
        "cls.predictions.decoder.bias": "cls.predictions.bias",
        "cls.predictions.decoder.weight": "roformer.embeddings.word_embeddings.weight",
    }

    def __init__(self, config: AudioFormerConfig):
        super().__init__(config)
        if config.num_hidden_layers == 0:
            raise ValueError(
                "A masked-LM AudioFormer needs num_hidden_layers >= 1: without layers a masked frame's prediction "
                "sees nothing but its own <MASK> embedding. num_hidden_layers=0 (a bag of embeddings) is for "
                "classification."
            )
        self.roformer = AudioFormerModel(config)
        self.cls = AudioFormerOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        Args:
            labels: `(B, T)` (or `(B, K, T)`, row `codebook_index` is used) original ids at masked positions and
                -100 elsewhere; the loss is the cross-entropy over masked positions only. A fused model (K input
                codebooks): `(B, T, K)`, column j for codebook `input_codebooks[j]` (frames first, like its logits,
                so Trainer pads evaluation batches of different lengths along T); the loss is the mean over
                codebooks of each codebook's cross-entropy over its masked positions.
            kwargs: `output_attentions`, `output_hidden_states`, `return_dict`, as for `AudioFormerModel`.

        Returns:
            `MaskedLMOutput` with `logits` `(B, T, vocab_size)`; a fused model's `(B, T, K, vocab_size)`.
        """
        outputs = self.roformer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        prediction_scores = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None and self.config.is_fused:
            loss = fused_mlm_loss(prediction_scores, labels)
        elif labels is not None:
            labels = select_codebook(labels, self.config)
            loss = F.cross_entropy(
                prediction_scores.view(-1, self.config.vocab_size).float(), labels.reshape(-1), ignore_index=-100
            )
        return MaskedLMOutput(
            loss=loss, logits=prediction_scores, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def fused_mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`(B, T, K, V)` logits, `(B, T, K)` labels (-100 where not masked) -> the mean over the K codebooks of each
    one's cross-entropy over its masked positions (codebooks with none left out)."""
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"A fused model's MLM labels must have shape (batch, seq_len, num_input_codebooks) = "
            f"{tuple(logits.shape[:-1])}, got {tuple(labels.shape)}."
        )
    labels = labels.to(logits.device)
    token_losses = F.cross_entropy(
        logits.flatten(0, -2).float(), labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(labels.shape)  # (B, T, K), 0 where not masked
    masked = (labels != -100).sum(dim=(0, 1))  # (K,)
    per_codebook = token_losses.sum(dim=(0, 1)) / masked.clamp(min=1)
    return per_codebook[masked > 0].mean()


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
    `config.multi_label_loss="bce"`, binary cross-entropy (eq. 6). With `config.classifier_batch_norm` the head
    standardises the pooled features before the classifier; `pooled_output` stays the plain mean (what FT2's
    contrastive term and the exported embeddings read).
    """

    def __init__(self, config: AudioFormerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roformer = AudioFormerModel(config)
        if config.classifier_batch_norm:
            self.pooled_norm = nn.BatchNorm1d(config.hidden_size, affine=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AudioFormerClassifierOutput:
        r"""
        Args:
            labels: `(B,)` class indices (single-label) or `(B, num_labels)` multi-hot floats (multi-label).
            kwargs: `output_attentions`, `output_hidden_states`, `return_dict`, as for `AudioFormerModel`.

        Returns:
            `AudioFormerClassifierOutput` with `logits` `(B, num_labels)` and `pooled_output` `(B, hidden_size)`.
        """
        rows, attention_mask = codes_and_mask(input_ids, attention_mask, self.config)
        outputs = self.roformer(
            input_ids if self.config.is_fused else rows,  # a fused encoder picks its rows of (B, K, T) itself
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        pooled_output = masked_mean(outputs.last_hidden_state, attention_mask)
        features = self.standardise(pooled_output) if self.config.classifier_batch_norm else pooled_output
        logits = self.classifier(self.dropout(features))

        loss = None
        if labels is not None:
            loss = self.classification_loss(logits, labels)
        return AudioFormerClassifierOutput(
            loss=loss,
            logits=logits,
            pooled_output=pooled_output,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def standardise(self, pooled_output: torch.Tensor) -> torch.Tensor:
        """`(B, D)` -> `(B, D)` standardised per feature: by the batch's statistics while training (a batch of one
        clip, which has none, by the running ones), by the running statistics otherwise."""
        norm = self.pooled_norm
        use_batch = self.training and pooled_output.shape[0] > 1
        return F.batch_norm(
            pooled_output,
            norm.running_mean,
            norm.running_var,
            training=use_batch,
            momentum=norm.momentum,
            eps=norm.eps,
        )

    @torch.no_grad()
    def fold_decision_thresholds(self, thresholds: list[float] | torch.Tensor) -> None:
        """Moves per-class decision thresholds `(num_labels,)` (logit units, e.g. calibrated on a validation split)
        into the classifier's bias, so that logit 0, i.e. sigmoid 0.5, is each class's threshold for every client of
        the model (transformers' stock pipeline, exported graphs, any sigmoid); records them in
        `config.decision_thresholds`. The order of the clips per class, hence the AP of each class, is unchanged."""
        shift = torch.as_tensor(thresholds, dtype=self.classifier.bias.dtype, device=self.classifier.bias.device)
        if shift.shape != self.classifier.bias.shape:
            raise ValueError(
                f"Got {shift.numel()} decision thresholds for a classifier of {self.classifier.bias.numel()} labels."
            )
        self.classifier.bias -= shift
        self.config.decision_thresholds = [float(t) for t in shift.tolist()]

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
            return bce_loss(logits, labels)  # eq. 6: summed over the classes, averaged over the clips
        return lsep_loss(logits, labels)  # eq. 7, averaged over the clips with a positive and a negative label


# The name transformers' text-classification mappings and `run_classification`-style scripts look for.
AudioFormerForSequenceClassification = AudioFormerForAudioClassification

__all__ = [
    "AudioFormerPreTrainedModel",
    "AudioFormerModel",
    "AudioFormerForMaskedLM",
    "AudioFormerForAudioClassification",
    "AudioFormerForSequenceClassification",
    "AudioFormerClassifierOutput",
    "fused_mlm_loss",
    "masked_mean",
    "select_codebook",
]
