"""The attention's query / key / value projections: three module calls (today's code, which quantizers, LoRA and hooks
see) against the former single matrix product of the concatenated weights (which copied the three weights at every
call and bypassed those tools), in one process, interleaved, on the same model and padded batch.

    python benchmarks/bench_qkv_projections.py                      # paper size, inference, ~1 min on 2 CPU cores
    python benchmarks/bench_qkv_projections.py --num_layers 2 --modes train,infer
"""

import argparse

import torch
import torch.nn.functional as F
from interleaved_timing import medians, time_interleaved

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerModel
from audioformer.modeling_audioformer.modeling_audioformer import AudioFormerSelfAttention


def fused_qkv_forward(self, hidden_states, rotary, tokens, attention_mask, attn_implementation):
    """The former forward: one `F.linear` on `cat([query.weight, key.weight, value.weight])`."""
    weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
    bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
    qkv = F.linear(hidden_states, weight, bias).unflatten(-1, (3, self.num_attention_heads, -1))
    query, key, value = qkv.unbind(-3)
    self.query, self.key, self.value = _Given(query), _Given(key), _Given(value)
    try:
        return MODULE_CALLS(self, hidden_states, rotary, tokens, attention_mask, attn_implementation)
    finally:
        self.query, self.key, self.value = self._linears


class _Given(torch.nn.Module):
    """Stands in for a projection whose output was computed already (by the fused product)."""

    def __init__(self, output):
        super().__init__()
        self.output = output.flatten(-2)

    def forward(self, _):
        return self.output


MODULE_CALLS = AudioFormerSelfAttention.forward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_layers", type=int, default=12)
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--num_heads", type=int, default=12)
    parser.add_argument("--lengths", type=str, default="752,600,400,200")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", type=str, default="infer")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = AudioFormerConfig(
        hidden_size=args.hidden_size,
        embedding_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=4 * args.hidden_size,
        max_position_embeddings=1024,
    )
    model = AudioFormerModel(config)
    for layer in model.encoder.layer:
        attention = layer.attention.self
        attention._linears = (attention.query, attention.key, attention.value)
    lengths = [int(n) for n in args.lengths.split(",")]
    input_ids = torch.ones(len(lengths), max(lengths), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(3, 1027, (n,))
        attention_mask[i, :n] = 1

    def run(forward, mode):
        def step():
            AudioFormerSelfAttention.forward = forward
            try:
                if mode == "infer":
                    model.eval()
                    with torch.inference_mode():
                        model(input_ids, attention_mask=attention_mask)
                else:
                    model.train()
                    model(input_ids, attention_mask=attention_mask).last_hidden_state.square().mean().backward()
                    model.zero_grad(set_to_none=True)
            finally:
                AudioFormerSelfAttention.forward = MODULE_CALLS

        return step

    with torch.no_grad():
        model.eval()
        AudioFormerSelfAttention.forward = fused_qkv_forward
        fused = model(input_ids, attention_mask=attention_mask).last_hidden_state
        AudioFormerSelfAttention.forward = MODULE_CALLS
        calls = model(input_ids, attention_mask=attention_mask).last_hidden_state
    print(
        f"{args.num_layers} layers x {args.hidden_size}, batch lengths {args.lengths}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; attention {config._attn_implementation}; median of {args.repeats} "
        f"interleaved repeats; max |hidden state difference| {(fused - calls).abs().max().item():.2e}"
    )
    for mode in args.modes.split(","):
        wall, cpu = time_interleaved(
            {"module_calls": run(MODULE_CALLS, mode), "fused_qkv": run(fused_qkv_forward, mode)}, args.repeats
        )
        m = medians(wall, cpu)
        print(
            f"{mode:6s} three module calls {m['module_calls']:.3f} s | fused qkv product {m['fused_qkv']:.3f} s | "
            f"fused / calls {m['fused_qkv'] / m['module_calls']:.3f} (process CPU: "
            f"{m['fused_qkv_cpu'] / m['module_calls_cpu']:.3f})"
        )


if __name__ == "__main__":
    main()
