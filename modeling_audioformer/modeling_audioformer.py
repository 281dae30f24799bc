"""AudioFormer: RoFormer over EnCodec acoustic codes (paper sections 3.2-3.3).

The parameter names are those of transformers' `RoFormerModel` / `RoFormerForMaskedLM`, so their state dicts load as
they are, and the outputs agree with RoFormer's on real (non-padding) positions. What differs is how the network runs:

- attention goes through transformers' attention interface (`scaled_dot_product_attention` by default);
- a padded batch is "unpadded": embeddings, projections, feed-forward blocks and LayerNorms run on the real
  tokens only, packed as `(num_real_tokens, hidden)`; only attention sees the padded
  `(batch, heads, seq_len, head_size)` layout.
  Padding positions of the returned hidden states are therefore 0, not RoFormer's (meaningless) values there;
- query, key and value come from one matrix product, the rotary tables are computed once per forward as complex
  numbers, and a batch without padding attends with no mask at all;
- inputs may carry all codebooks `(batch, num_codebooks, seq_len)`, of which the model reads `config.codebook_index`.
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
from .losses import bce_loss, lsep_loss


def select_codebook(input_ids: torch.Tensor, config: AudioFormerConfig) -> torch.Tensor:
    """`(B, K, T)` codes of all codebooks -> `(B, T)` row `config.codebook_index`; `(B, T)` passes through."""
    if input_ids.dim() == 2:
        return input_ids
    if input_ids.dim() != 3:
        raise ValueError(
            "input_ids must have shape (batch, seq_len) or (batch, num_codebooks, seq_len), "
            f"got {tuple(input_ids.shape)}."
        )
    if config.codebook_index >= input_ids.shape[1]:
        raise ValueError(
            f"This model reads codebook {config.codebook_index} (config.codebook_index) but input_ids has only "
            f"{input_ids.shape[1]} codebooks (shape {tuple(input_ids.shape)})."
        )
    return input_ids[:, config.codebook_index]


def codes_and_mask(
    input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, config: AudioFormerConfig
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The `(B, T)` codebook row the model reads and a `(B, T)` bool mask, True at real positions.

    `attention_mask` may be `(B, T)` or `(B, K, T)`, of any dtype (0 = padding); without one, positions whose id is
    `config.pad_token_id` are padding.
    """
    if input_ids is not None:
        input_ids = select_codebook(input_ids, config)
        if attention_mask is None and config.pad_token_id is not None:
            attention_mask = input_ids != config.pad_token_id
    if attention_mask is None:
        return input_ids, None
    if attention_mask.dim() == 3:  # (B, K, T) masks: every row is the same
        attention_mask = attention_mask[:, config.codebook_index]
    return input_ids, attention_mask.bool()


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
        """`exp(i * t * theta_j)`: complex64 `(seq_len, head_size / 2)`, one entry per position and pair."""
        if seq_len > self.weight.shape[0]:
            raise ValueError(
                f"Sequence length {seq_len} is longer than max_position_embeddings={self.weight.shape[0]}."
            )
        sin, cos = self.weight[:seq_len].float().chunk(2, dim=-1)
        return torch.complex(cos, sin)


def apply_rotary(x: torch.Tensor, rotary: torch.Tensor) -> torch.Tensor:
    """Rotate each pair `(x_{2j}, x_{2j+1})` by angle `t * theta_j` (paper eq. 2) as the complex product
    `(x_{2j} + i x_{2j+1}) * exp(i t theta_j)`, in float32.

    Args:
        x: `(..., head_size)` queries or keys whose position `t` is the dimension `rotary` broadcasts against.
        rotary: complex `(..., head_size / 2)` from `rotary_tables`, broadcastable to `x`'s pairs.
    """
    # One complex multiply instead of RoFormer's stack / interleave of sin and cos: fewer kernels and temporaries.
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotary).flatten(-2).to(x.dtype)


class Padding:
    """Where the real tokens of a padded `(batch_size, seq_len)` batch are, to pack them and unpack them.

    `indices` holds the flat positions `b * seq_len + t` of the real tokens, or is None when there is no padding (then
    packing is a free reshape). `lengths` (real tokens per clip) is set when attention runs clip by clip on the packed
    tokens instead of on the padded batch.
    """

    def __init__(self, batch_size: int, seq_len: int, indices: torch.Tensor | None, lengths: list[int] | None = None):
        self.batch_size, self.seq_len, self.indices, self.lengths = batch_size, seq_len, indices, lengths

    @classmethod
    def from_mask(
        cls, attention_mask: torch.Tensor | None, batch_size: int, seq_len: int, per_clip_attention: bool = False
    ) -> "Padding":
        if attention_mask is None or bool(attention_mask.all()):
            return cls(batch_size, seq_len, None)
        indices = attention_mask.reshape(-1).nonzero().squeeze(-1)
        lengths = attention_mask.sum(dim=1).tolist() if per_clip_attention else None
        return cls(batch_size, seq_len, indices, lengths)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, ...)` -> `(N, ...)`: the real tokens only."""
        x = x.reshape(self.batch_size * self.seq_len, *x.shape[2:])
        return x if self.indices is None else x.index_select(0, self.indices)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, ...)` -> `(B, T, ...)` with zeros at padding positions."""
        if self.indices is not None:
            x = x.new_zeros(self.batch_size * self.seq_len, *x.shape[1:]).index_copy(0, self.indices, x)
        return x.view(self.batch_size, self.seq_len, *x.shape[1:])


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

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
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

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, rotary: torch.Tensor, padding: Padding
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Packed `(N, hidden)` real tokens -> `(N, hidden)`, and the `(B, H, T, T)` attention weights (eager only)."""
        # One matrix product for query, key and value (RoFormer's three weights stay separate parameters).
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        qkv = F.linear(hidden_states, weight, bias).unflatten(-1, (3, self.num_attention_heads, -1))  # (N, 3, H, D)
        if padding.lengths is not None:
            return self.attend_per_clip(qkv, rotary, padding), None

        qkv = padding.unpack(qkv)  # (B, T, 3, H, D)
        query_key, value = self.rotate(qkv, rotary[:, None])
        query, key = query_key.transpose(1, 3).unbind(2)  # (B, H, T, D) each
        value = value.transpose(1, 2)
        attn_output, attn_weights = self.attention_interface()(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout.p if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
        )
        return padding.pack(attn_output.flatten(-2)), attn_weights

    def attention_interface(self) -> Callable:
        return ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)

    def rotate(self, qkv: torch.Tensor, rotary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(..., 3, H, D)` -> rotated queries and keys `(..., 2, H, D)`, values `(..., H, D)` (rotated if
        `config.rotary_value`). `rotary`: `(..., 1, D / 2)`, broadcastable to the values' pairs."""
        value = qkv[..., 2, :, :]
        query_key = apply_rotary(qkv[..., :2, :, :], rotary.unsqueeze(-3))
        return query_key, (apply_rotary(value, rotary) if self.rotary_value else value)

    def attend_per_clip(self, qkv: torch.Tensor, rotary: torch.Tensor, padding: Padding) -> torch.Tensor:
        """Attention of each clip over its own real tokens, with no mask: `(N, 3, H, D)` -> `(N, hidden)`.

        A padded batch's attention costs `B * T^2`; clip by clip it costs `sum(length^2)` (about half for lengths
        spread over [T/4, T]). `rotary` is per packed token: `(N, D / 2)`.
        """
        query_key, value = self.rotate(qkv, rotary[:, None])
        attention = self.attention_interface()
        dropout = self.dropout.p if self.training else 0.0
        outputs = []
        for clip_query_key, clip_value in zip(query_key.split(padding.lengths), value.split(padding.lengths)):
            if clip_value.shape[0] == 0:  # an all-padding clip has no tokens to attend from
                outputs.append(clip_value.flatten(-2))
                continue
            query, key = clip_query_key.permute(1, 2, 0, 3).unsqueeze(1).unbind(0)  # (1, H, L, D) each
            value = clip_value.transpose(0, 1).unsqueeze(0)
            attn_output, _ = attention(
                self, query, key, value, None, dropout=dropout, scaling=self.scaling, is_causal=False
            )
            outputs.append(attn_output[0].flatten(-2))  # (L, hidden)
        return torch.cat(outputs)


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

    def forward(self, hidden_states, attention_mask, rotary, padding):
        attn_output, attn_weights = self.self(hidden_states, attention_mask, rotary, padding)
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
    """One post-norm BERT block on packed real tokens `(N, hidden)`: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, config: AudioFormerConfig):
        super().__init__()
        self.attention = AudioFormerAttention(config)
        self.intermediate = AudioFormerIntermediate(config)
        self.output = AudioFormerOutput(config)

    def forward(self, hidden_states, attention_mask, rotary, padding):
        attention_output, attn_weights = self.attention(hidden_states, attention_mask, rotary, padding)
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

    def forward(self, hidden_states, attention_mask, padding, output_attentions=False, output_hidden_states=False):
        """Packed `(N, hidden)` real tokens -> `BaseModelOutput` of `(B, T, hidden)` states, 0 at padding."""
        rotary = self.embed_positions.rotary_tables(padding.seq_len)  # once for all layers
        if padding.lengths is not None:  # per packed token
            rotary = rotary[padding.indices % padding.seq_len]
        all_hidden_states = (padding.unpack(hidden_states),) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer_module in self.layer:
            hidden_states, attn_weights = layer_module(hidden_states, attention_mask, rotary, padding)
            if output_hidden_states:
                all_hidden_states += (padding.unpack(hidden_states),)
            if output_attentions:
                all_attentions += (attn_weights,)
        return BaseModelOutput(
            last_hidden_state=padding.unpack(hidden_states), hidden_states=all_hidden_states, attentions=all_attentions
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


# Every Auto class an AudioFormer folder can be loaded with as remote code; all of them live in this file.
AUTO_MAP = {
    "AutoConfig": "configuration_audioformer.AudioFormerConfig",
    "AutoModel": "modeling_audioformer.AudioFormerModel",
    "AutoModelForMaskedLM": "modeling_audioformer.AudioFormerForMaskedLM",
    "AutoModelForAudioClassification": "modeling_audioformer.AudioFormerForAudioClassification",
    "AutoModelForSequenceClassification": "modeling_audioformer.AudioFormerForAudioClassification",
}


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

    def save_pretrained(self, save_directory, *args, **kwargs):
        # transformers writes into `auto_map` only the Auto class of the saved model; a remote-code user also loads
        # the encoder of a classifier (`AutoModel`) or a classifier from a pretraining checkpoint. The code files are
        # copied (hence the map is valid) only for classes registered with `register_for_auto_class`.
        if self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)

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
            attention_mask: `(B, T)` (or `(B, K, T)`), 1 / True for real positions and 0 / False for padding, any
                dtype. If omitted, positions whose id is `config.pad_token_id` are padding.

        Returns:
            `BaseModelOutput` with `last_hidden_state` `(B, T, hidden_size)`. Only real positions are computed: the
            hidden states (and `hidden_states` after each layer) are 0 at padding positions.
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
        input_ids, attention_mask = codes_and_mask(input_ids, attention_mask, self.config)
        batch_size, seq_len = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        if attention_mask is not None and attention_mask.shape != (batch_size, seq_len):
            raise ValueError(
                f"attention_mask must have shape (batch, seq_len) = {(batch_size, seq_len)} (or (batch, "
                f"num_codebooks, seq_len)), got {tuple(attention_mask.shape)}."
            )
        # On CPU, attention clip by clip over real tokens skips the padding's share of the T^2 work. The per-clip loop
        # needs the SDPA path (no weights to return); on accelerators one batched kernel is kept.
        per_clip_attention = (
            self.config._attn_implementation == "sdpa" and not output_attentions and self.device.type == "cpu"
        )
        padding = Padding.from_mask(attention_mask, batch_size, seq_len, per_clip_attention)
        # Everything but attention is token-wise, so it runs on the real tokens only.
        embedding_output = self.embeddings(
            input_ids=padding.pack(input_ids) if input_ids is not None else None,
            inputs_embeds=padding.pack(inputs_embeds) if inputs_embeds is not None else None,
            token_type_ids=padding.pack(token_type_ids) if token_type_ids is not None else None,
        )  # (N, embedding_size)
        if hasattr(self, "embeddings_project"):
            embedding_output = self.embeddings_project(embedding_output)

        # None without padding (attention then needs no mask); the mask only reads the shape and dtype of the embeds.
        extended_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=embedding_output.new_empty(batch_size, seq_len, 0),
            attention_mask=attention_mask if padding.indices is not None else None,
        )
        outputs = self.encoder(
            embedding_output,
            extended_mask,
            padding,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
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
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        prediction_scores = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            labels = select_codebook(labels, self.config)
            loss = F.cross_entropy(
                prediction_scores.view(-1, self.config.vocab_size).float(), labels.reshape(-1), ignore_index=-100
            )
        if not return_dict:
            output = (prediction_scores,) + outputs.to_tuple()[1:]
            return ((loss,) + output) if loss is not None else output
        return MaskedLMOutput(
            loss=loss, logits=prediction_scores, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


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
        input_ids, attention_mask = codes_and_mask(input_ids, attention_mask, self.config)
        outputs = self.roformer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        pooled_output = masked_mean(outputs.last_hidden_state, attention_mask)
        logits = self.classifier(self.dropout(pooled_output))

        loss = None
        if labels is not None:
            loss = self.classification_loss(logits, labels)
        if not return_dict:
            output = (logits, pooled_output) + outputs.to_tuple()[1:]
            return ((loss,) + output) if loss is not None else output
        return AudioFormerClassifierOutput(
            loss=loss,
            logits=logits,
            pooled_output=pooled_output,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

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
    "masked_mean",
    "select_codebook",
]
