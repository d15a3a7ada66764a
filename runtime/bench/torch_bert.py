"""PyTorch baseline for `ptm bench infer`: BERT-base/large sequence classification (transformers,
SDPA attention) on random token ids, eager and captured as a CUDA graph; median device time of
one forward pass over CUDA events. Usage: python3 torch_bert.py --dtype fp16 --batch 1,8,32
--seq 128 --iters 200. Prints a markdown table and one JSON line per point."""
import argparse, json, statistics
import torch
from transformers import BertConfig, BertForSequenceClassification

ARCH = {"bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072),
        "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096)}
p = argparse.ArgumentParser()
p.add_argument("--arch", default="bert-base,bert-large")
p.add_argument("--dtype", default="fp16")
p.add_argument("--batch", default="1,8,32")
p.add_argument("--seq", type=int, default=128)
p.add_argument("--iters", type=int, default=200)
a = p.parse_args()
dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
torch.manual_seed(0)

def timed(fn, iters):
    out = []
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(iters):
        s.record(); fn(); e.record(); e.synchronize()
        out.append(s.elapsed_time(e))
    return statistics.median(out)

print("| model | dtype | batch | seq | torch eager ms | torch graph ms |")
print("|---|---|---|---|---|---|")
rows = []
for arch in a.arch.split(","):
    cfg = BertConfig(vocab_size=30522, num_labels=2, attn_implementation="sdpa", **ARCH[arch])
    m = BertForSequenceClassification(cfg).to("cuda", dt).eval()
    for b in map(int, a.batch.split(",")):
        ids = torch.randint(1000, 30522, (b, a.seq), device="cuda")
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            f = lambda: m(input_ids=ids, attention_mask=mask).logits
            for _ in range(20): f()
            torch.cuda.synchronize()
            eager = timed(f, a.iters)
            st = torch.cuda.Stream(); st.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(st):
                for _ in range(3): f()
            torch.cuda.current_stream().wait_stream(st)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = f()
            for _ in range(10): g.replay()
            graph = timed(g.replay, a.iters)
        print(f"| {arch} | {a.dtype} | {b} | {a.seq} | {eager:.3f} | {graph:.3f} |")
        rows.append(dict(model=arch, dtype=a.dtype, batch=b, seq=a.seq, torch_eager_ms=eager,
                         torch_graph_ms=graph, torch=torch.__version__,
                         gpu=torch.cuda.get_device_name()))
for r in rows:
    print(json.dumps(r))
