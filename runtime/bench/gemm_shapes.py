"""cuBLAS through PyTorch on BERT's dense GEMM shapes (tokens x in -> out, fp16, f32 accumulate):
median device time of F.linear with and without bias over CUDA events, for comparison with the
GEMM steps of `ptm bench infer --profile`. Usage: python3 gemm_shapes.py --tokens 4096."""
import argparse, statistics
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=4096)
p.add_argument("--iters", type=int, default=200)
a = p.parse_args()
torch.manual_seed(0)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
for name, (k, n) in {"QKV": (768, 2304), "O": (768, 768), "up": (768, 3072), "down": (3072, 768),
                     "large QKV": (1024, 3072), "large O": (1024, 1024), "large up": (1024, 4096),
                     "large down": (4096, 1024)}.items():
    x = torch.randn(a.tokens, k, device="cuda", dtype=torch.float16)
    w = torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.02
    b = torch.randn(n, device="cuda", dtype=torch.float16)
    for bias in (None, b):
        for _ in range(10): F.linear(x, w, bias)
        t = []
        for _ in range(a.iters):
            s.record(); F.linear(x, w, bias); e.record(); e.synchronize(); t.append(s.elapsed_time(e))
        ms = statistics.median(t)
        fl = 2 * a.tokens * k * n
        print(f"gemm {name:<10} {a.tokens}x{k}->{n} bias={bias is not None}: {ms*1e3:.1f} us, {fl/ms/1e9:.0f} TFLOP/s")
