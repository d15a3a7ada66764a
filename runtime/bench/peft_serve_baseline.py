"""The peer baseline for serving many LoRA tenants: Hugging Face peft with every adapter loaded
into one PeftModel over one backbone, requests served one at a time, each preceded by
`set_adapter` (peft runs one adapter per forward pass, so a batch cannot mix tenants).

Usage (GPU machine):
  ./ptm zoo make --arch bert-base --pet lora --rank 8 --targets query,value --tenants 300 \
      --dtype fp16 --out /tmp/pz
  python3 peft_serve_baseline.py --zoo /tmp/pz --adapters 100 --requests 2000 --zipf 1.0 \
      --texts 4 --seq 128 --dtype fp16

Tenants: the zoo's feature-extraction tenants (every third one: `modules_to_save` heads of
different label counts cannot share one peft model's head), loaded with `load_adapter`.
Requests: tenant drawn from Zipf(s) over the loaded adapters (seeded), `--texts` random texts of
`--seq` tokens each (one padded batch). Timed per request on the GPU clock (CUDA events around
set_adapter + forward) and on the wall clock for the whole run. Prints one JSON line with
throughput (requests/s), latency p50/p99 (ms), the adapter load time and the versions."""
import argparse, json, os, random, statistics, sys, time

p = argparse.ArgumentParser()
p.add_argument("--zoo", required=True)
p.add_argument("--adapters", type=int, default=100)
p.add_argument("--requests", type=int, default=2000)
p.add_argument("--zipf", type=float, default=1.0)
p.add_argument("--texts", type=int, default=4)
p.add_argument("--seq", type=int, default=128)
p.add_argument("--dtype", default="fp16", choices=["fp32", "fp16", "bf16"])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--warmup", type=int, default=50)
a = p.parse_args()

try:
    import torch
    import transformers
    from transformers import AutoModel
    import peft
    from peft import PeftModel
except ImportError as e:
    print(f"missing package: {e} (peft: carry a wheel, see /work/.library/device/README.md)",
          file=sys.stderr)
    sys.exit(2)

DT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
names = sorted(d for d in os.listdir(a.zoo)
               if os.path.isfile(os.path.join(a.zoo, d, "adapter_config.json"))
               and json.load(open(os.path.join(a.zoo, d, "adapter_config.json")))
               .get("task_type") in (None, "FEATURE_EXTRACTION"))[: a.adapters]
if not names:
    sys.exit(f"{a.zoo}: no feature-extraction LoRA tenants")
base = json.load(open(os.path.join(a.zoo, names[0], "adapter_config.json")))["base_model_name_or_path"]
base = base if os.path.isabs(base) else os.path.join(a.zoo, base)

t0 = time.perf_counter()
m = AutoModel.from_pretrained(base, dtype=DT).to("cuda").eval()
m = PeftModel.from_pretrained(m, os.path.join(a.zoo, names[0]), adapter_name=names[0])
for n in names[1:]:
    m.load_adapter(os.path.join(a.zoo, n), adapter_name=n)
m = m.to("cuda").eval()
torch.cuda.synchronize()
load_s = time.perf_counter() - t0

rng = random.Random(a.seed)
weights = [1.0 / (k + 1) ** a.zipf for k in range(len(names))]
order = list(range(len(names)))
rng.shuffle(order)  # popularity rank -> tenant
vocab = m.config.vocab_size if hasattr(m, "config") else 30522
reqs = [(names[order[rng.choices(range(len(names)), weights)[0]]],
         torch.randint(1000, vocab, (a.texts, a.seq), generator=torch.Generator().manual_seed(a.seed + i)))
        for i in range(a.requests + a.warmup)]


def serve(name, ids):
    m.set_adapter(name)
    ids = ids.to("cuda", non_blocking=True)
    out = m(input_ids=ids, attention_mask=torch.ones_like(ids))
    return out.last_hidden_state.mean(1)


lat = []
switches = 0
with torch.inference_mode():
    for name, ids in reqs[: a.warmup]:
        serve(name, ids)
    torch.cuda.synchronize()
    start = time.perf_counter()
    prev = None
    for name, ids in reqs[a.warmup:]:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        serve(name, ids)
        e.record()
        e.synchronize()
        lat.append(s.elapsed_time(e))
        switches += name != prev
        prev = name
    wall = time.perf_counter() - start
q = statistics.quantiles(lat, n=100)
print(json.dumps(dict(system="peft set_adapter, one request at a time", adapters=len(names),
                      requests=a.requests, zipf=a.zipf, texts=a.texts, seq=a.seq, dtype=a.dtype,
                      throughput_rps=a.requests / wall, p50_ms=q[49], p99_ms=q[98],
                      adapter_switches=switches, load_s=load_s, torch=torch.__version__,
                      transformers=transformers.__version__, peft=peft.__version__,
                      gpu=torch.cuda.get_device_name())))
