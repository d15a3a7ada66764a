"""PyTorch baseline for `ptm bench switch`: switching a resident BERT (transformers, fp16) to
other weights held in CPU memory, the ways a PyTorch server would:
  copy_      for every tensor of the state dict, param.copy_(pinned_cpu, non_blocking=True)
  lsd_pin    model.load_state_dict(state dict of pinned CPU tensors)
  lsd_page   model.load_state_dict(state dict of pageable CPU tensors)
  floor      one flat pinned buffer of the same bytes copied to the GPU (non_blocking)
  full       BertModel.from_pretrained(dir saved as safetensors) then .to("cuda")
Each timed from the call to torch.cuda.synchronize() (wall clock, median of --iters).
Usage: python3 torch_switch.py --arch bert-base,bert-large --iters 40"""
import argparse, json, statistics, tempfile, time
import torch
from transformers import BertConfig, BertForSequenceClassification

ARCH = {"bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072),
        "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096)}
p = argparse.ArgumentParser()
p.add_argument("--arch", default="bert-base,bert-large")
p.add_argument("--iters", type=int, default=40)
p.add_argument("--full-iters", type=int, default=3)
a = p.parse_args()
dt = torch.float16
torch.manual_seed(0)


def wall_ms(fn, iters, warm=3):
    for _ in range(warm):
        fn(); torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t = time.perf_counter(); fn(); torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


rows = []
for arch in a.arch.split(","):
    cfg = BertConfig(vocab_size=30522, num_labels=9, attn_implementation="sdpa", **ARCH[arch])
    m = BertForSequenceClassification(cfg).to("cuda", dt).eval()
    other = BertForSequenceClassification(cfg).to(dtype=dt)  # another tenant, on the CPU
    sd_page = {k: v.contiguous() for k, v in other.state_dict().items()}
    sd_pin = {k: v.pin_memory() for k, v in sd_page.items()}
    dst = m.state_dict()
    pairs = [(dst[k], sd_pin[k]) for k in dst]
    nbytes = sum(v.numel() * v.element_size() for v in sd_pin.values())

    def copy_():
        with torch.no_grad():
            for d, s in pairs:
                d.copy_(s, non_blocking=True)

    flat = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    flat_dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    r = dict(arch=arch, mb=nbytes / 1e6,
             floor=wall_ms(lambda: flat_dev.copy_(flat, non_blocking=True), a.iters),
             copy_=wall_ms(copy_, a.iters),
             lsd_pin=wall_ms(lambda: m.load_state_dict(sd_pin), a.iters),
             lsd_page=wall_ms(lambda: m.load_state_dict(sd_page), max(5, a.iters // 4)))
    with tempfile.TemporaryDirectory() as d:
        other.save_pretrained(d)
        full = []
        for _ in range(a.full_iters):
            torch.cuda.synchronize(); t = time.perf_counter()
            x = BertForSequenceClassification.from_pretrained(d, dtype=dt).to("cuda")
            torch.cuda.synchronize(); full.append((time.perf_counter() - t) * 1e3)
            del x
        r["full"] = statistics.median(full)
    r["floor_gbps"] = nbytes / r["floor"] / 1e6
    rows.append(r)
    print(json.dumps(r), flush=True)
    del m, other, sd_pin, sd_page, pairs, flat, flat_dev
    torch.cuda.empty_cache()

print("\n| torch | MB | floor ms (GB/s) | copy_ pinned non_blocking ms | load_state_dict pinned ms | load_state_dict pageable ms | from_pretrained + .to(cuda) ms |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['arch']} fp16 | {r['mb']:.1f} | {r['floor']:.3f} ({r['floor_gbps']:.1f}) | {r['copy_']:.3f} | "
          f"{r['lsd_pin']:.3f} | {r['lsd_page']:.2f} | {r['full']:.0f} |")
