"""Speed of the hot paths on one device, on random-init models of real shapes.

    python benchmarks/gpu.py --shape gemma2-2b --device cuda --dtype bfloat16     # on a GPU
    python benchmarks/gpu.py --shape tiny --device cpu                            # anywhere (CI runs this)

Weight values do not change these costs, so random-init models stand in for checkpoints.
Prints one table:

1. offspring: a 2-parent linear merge + mutation + install for a full-weight individual,
   against the time to read two parents and write one child once at the device's
   measured copy bandwidth (target on a GPU: at most 1.3x);
2. multi-LoRA: N LoRA individuals (rank r on every linear layer) scored on S sequences in
   one mixed-adapter batch, against N separate passes;
3. scoring throughput: forward FLOPs per second of multiple-choice scoring (2 x params x
   tokens) against the device's measured matmul peak in the same dtype (target: 60%);
4. generation: batched greedy decoding, new tokens per second, dynamic and static cache;
5. memory: bytes of N LoRA individuals plus the base on the device (target: 40 x rank 16
   on gemma-2-2b within 24 GB).
"""

from __future__ import annotations

import argparse
import time

import torch

SHAPES = {
    # hidden, intermediate, layers, heads, kv heads, head dim, vocab
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=512),
    "gemma2-2b": dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                      num_key_value_heads=4, head_dim=256, vocab_size=256000),
}
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeat: int = 3) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def make_model(shape: str, dtype: torch.dtype, device: torch.device):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(**SHAPES[shape], max_position_embeddings=4096, sliding_window=4096)
    with torch.device(device):
        model = Gemma2ForCausalLM(cfg).to(dtype)
    return model.eval().requires_grad_(False)


def bandwidth(numel: int, dtype: torch.dtype, device: torch.device) -> float:
    """Bytes per second of a device-to-device copy (read + write)."""
    src = torch.empty(numel, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), device)
    return 2 * numel * src.element_size() / t


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / timed(lambda: a @ b, device)


def offspring(model, device, dtype) -> dict:
    from evo_merge.genome import Genome
    from evo_merge.merge import merge_genomes
    from evo_merge.operators.mutation import mutate

    tensors = {n: p.detach() for n, p in model.named_parameters()}
    base = Genome.from_tensors(tensors, "delta", check_finite=False)
    a = base.with_flat(torch.randn(base.flat.shape, device=device).to(dtype) * 0.01)
    b = base.with_flat(torch.randn(base.flat.shape, device=device).to(dtype) * 0.01)
    work = torch.empty_like(base.flat)

    def step():
        child = merge_genomes("linear", [a, b], [0.5, 0.5])
        child = mutate(child, seed=1, weight_rate=0.01, sigma=0.01)
        work.copy_(child.flat)
        work.add_(base.flat)

    t = timed(step, device)
    floor = 3 * base.nbytes() / bandwidth(base.flat.numel(), dtype, device)
    return {"params": base.flat.numel(), "seconds": t, "floor": floor}


def multi_lora(model, device, n: int, seqs: int, tokens: int, rank: int) -> dict:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LINEAR)
    peft_model = get_peft_model(model, cfg)
    for k in range(n):
        peft_model.add_adapter(f"i{k}", cfg)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.01)
    peft_model.eval().requires_grad_(False)
    ids = torch.randint(0, model.config.vocab_size, (seqs, tokens), device=device)

    def separate():
        for k in range(n):
            peft_model.set_adapter(f"i{k}")
            peft_model(input_ids=ids, logits_to_keep=1, use_cache=False)

    def batched():
        peft_model(input_ids=ids.repeat(n, 1), logits_to_keep=1, use_cache=False,
                   adapter_names=[f"i{k}" for k in range(n) for _ in range(seqs)])

    with torch.no_grad():
        sep, bat = timed(separate, device, 1), timed(batched, device, 1)
    lora_bytes = sum(p.numel() * p.element_size() for name, p in peft_model.named_parameters()
                     if "lora_" in name and ".i0." in name)
    base_bytes = sum(p.numel() * p.element_size() for name, p in peft_model.named_parameters() if "lora_" not in name)
    peft_model.unload()
    return {"separate": sep, "batched": bat, "lora_bytes": lora_bytes, "base_bytes": base_bytes}


def scoring(model, device, dtype, seqs: int, tokens: int) -> dict:
    ids = torch.randint(0, model.config.vocab_size, (seqs, tokens), device=device)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        t = timed(lambda: model(input_ids=ids, logits_to_keep=1, use_cache=False), device)
    return {"seconds": t, "flops": 2 * params * seqs * tokens / t}


def generation(model, device, batch: int, new: int) -> dict:
    ids = torch.randint(3, model.config.vocab_size, (batch, 32), device=device)
    out = {}
    for cache in ("dynamic", "static"):
        kwargs = {"cache_implementation": "static"} if cache == "static" else {}
        with torch.no_grad():
            t = timed(lambda: model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                             pad_token_id=0, **kwargs), device, 1)
        out[cache] = batch * new / t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--individuals", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--gen-batch", type=int, default=200)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--memory-individuals", type=int, default=40)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    model = make_model(args.shape, dtype, device)
    rows = []
    o = offspring(model, device, dtype)
    rows.append(("offspring (linear + mutation + install)", f"{o['seconds'] * 1e3:.2f} ms",
                 f"{o['seconds'] / o['floor']:.2f}x the read-2-write-1 floor ({o['floor'] * 1e3:.2f} ms), "
                 f"{o['params'] / 1e6:.1f} M params"))
    s = scoring(model, device, dtype, args.samples, args.tokens)
    peak = matmul_peak(dtype, device, 4096 if device.type == "cuda" else 512)
    rows.append(("MC scoring forward", f"{s['seconds']:.3f} s",
                 f"{s['flops'] / 1e12:.2f} TFLOP/s = {s['flops'] / peak:.0%} of measured matmul peak "
                 f"{peak / 1e12:.2f}, {args.samples} x {args.tokens} tokens"))
    g = generation(model, device, args.gen_batch, args.gen_tokens)
    rows.append(("greedy generation", f"{g['static']:.0f} tok/s static",
                 f"{g['dynamic']:.0f} tok/s dynamic cache; batch {args.gen_batch} x {args.gen_tokens} new"))
    m = multi_lora(model, device, args.individuals, args.samples, args.tokens, args.rank)
    rows.append(("multi-LoRA scoring", f"{m['batched']:.3f} s batched",
                 f"{m['separate']:.3f} s for {args.individuals} separate passes "
                 f"({m['separate'] / m['batched']:.2f}x), rank {args.rank} on every linear"))
    total = args.memory_individuals * m["lora_bytes"] + m["base_bytes"]
    rows.append(("memory", f"{total / 2**30:.2f} GiB",
                 f"{args.memory_individuals} LoRA individuals x {m['lora_bytes'] / 2**20:.1f} MiB + base "
                 f"{m['base_bytes'] / 2**30:.2f} GiB"))
    print(f"shape {args.shape}, device {device}, dtype {args.dtype}")
    for name, value, detail in rows:
        print(f"{name:<40}{value:>18}   {detail}")


if __name__ == "__main__":
    main()
