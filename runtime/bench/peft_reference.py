"""Hugging Face transformers + peft on the same LoRA tenant files that `ptm infer` reads, for
the correctness check of issue 15: the tenant's outputs for the token ids `ptm infer --json`
printed, compared with ptm's values (relative error ||ptm - peft|| / ||peft|| per text).

Usage (on the GPU machine, which has torch, transformers and peft):
  ./ptm infer --model ZOO/bert-base-lora-t00000 --dtype fp16 --json --text "..." > ptm.json
  python3 peft_reference.py --tenant ZOO/bert-base-lora-t00000 --ptm-json ptm.json --dtype fp16

The backbone is the tenant's `base_model_name_or_path`, resolved as ptm does (absolute, else
relative to the tenant folder's parent, else to the current directory). Each text runs alone
(no padding), token type 0, attention mask 1. Heads: SEQ_CLS -> AutoModelForSequenceClassification
(labels from the tenant's classifier), TOKEN_CLS -> AutoModelForTokenClassification,
FEATURE_EXTRACTION -> AutoModel with ptm's embedding head (mean over tokens, L2-normalised).
Prints one JSON line per text and a summary; exits 1 if any text is off by more than --tol
(default per dtype: fp32 1e-4, fp16 1e-2, bf16 5e-2), 2 if a package is missing."""
import argparse, json, os, struct, sys

p = argparse.ArgumentParser()
p.add_argument("--tenant", required=True, action="append", help="tenant folder (repeatable)")
p.add_argument("--ptm-json", required=True, action="append",
               help="`ptm infer --json` output for the tenant (one per --tenant, same order)")
p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
p.add_argument("--tol", type=float, default=None)
a = p.parse_args()
if len(a.tenant) != len(a.ptm_json):
    sys.exit("give one --ptm-json per --tenant")

try:
    import torch
    import transformers
    from transformers import (AutoModel, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)
except ImportError as e:
    print(f"missing package: {e}", file=sys.stderr)
    sys.exit(2)
try:
    import peft
    from peft import PeftModel
except ImportError:
    print("peft is not installed here: carry a wheel as /work/.library/device/README.md explains "
          "(pip download --no-deps ... peft==VERSION into .whl, carry .whl)", file=sys.stderr)
    sys.exit(2)

DT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
TOL = a.tol if a.tol is not None else {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}[a.dtype]
dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
print(json.dumps(dict(torch=torch.__version__, transformers=transformers.__version__,
                      peft=peft.__version__, device=dev,
                      gpu=torch.cuda.get_device_name() if dev == "cuda" else None,
                      dtype=a.dtype, tol=TOL)))


def backbone_of(tenant, name):
    if os.path.isabs(name):
        return name
    for c in (os.path.join(os.path.dirname(os.path.abspath(tenant)), name), name):
        if os.path.isfile(os.path.join(c, "config.json")):
            return c
    sys.exit(f"{tenant}: backbone {name} not found")


def safetensors_shapes(path):
    """Tensor shapes from a safetensors header (no torch load needed)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return {k: v["shape"] for k, v in h.items() if k != "__metadata__"}


def load(tenant):
    cfg = json.load(open(os.path.join(tenant, "adapter_config.json")))
    base = backbone_of(tenant, cfg["base_model_name_or_path"])
    task = cfg.get("task_type") or "FEATURE_EXTRACTION"
    kw = dict(dtype=DT)
    if task == "SEQ_CLS":
        shapes = safetensors_shapes(os.path.join(tenant, "adapter_model.safetensors"))
        labels = next(s[0] for k, s in shapes.items()
                      if k.endswith("classifier.weight") or k.endswith("classifier.out_proj.weight"))
        m = AutoModelForSequenceClassification.from_pretrained(base, num_labels=labels, **kw)
    elif task == "TOKEN_CLS":
        shapes = safetensors_shapes(os.path.join(tenant, "adapter_model.safetensors"))
        labels = next(s[0] for k, s in shapes.items() if k.endswith("classifier.weight"))
        m = AutoModelForTokenClassification.from_pretrained(base, num_labels=labels, **kw)
    else:
        m = AutoModel.from_pretrained(base, **kw)
    m = PeftModel.from_pretrained(m, tenant).to(dev).eval()
    return m, task


worst = 0.0
failed = 0
for tenant, pj in zip(a.tenant, a.ptm_json):
    model, task = load(tenant)
    rows = json.load(open(pj))
    for i, r in enumerate(rows):
        ids = torch.tensor([r["token_ids"]], device=dev)
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                        token_type_ids=torch.zeros_like(ids))
        if task == "FEATURE_EXTRACTION":
            hs = out.last_hidden_state[0].float()
            v = hs.mean(0)
            v = v / v.norm().clamp_min(1e-12)
        else:
            v = out.logits[0].float()
        ref = v.flatten().cpu()
        got = torch.tensor(r["values"], dtype=torch.float32)
        if got.shape != ref.shape:
            print(json.dumps(dict(tenant=tenant, text=i, error=f"shape {list(got.shape)} vs {list(ref.shape)}")))
            failed += 1
            continue
        rel = ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()
        worst = max(worst, rel)
        ok = rel <= TOL
        failed += not ok
        print(json.dumps(dict(tenant=os.path.basename(tenant.rstrip("/")), task=task, text=i,
                              tokens=len(r["token_ids"]), rel_err=rel,
                              max_abs=(got - ref).abs().max().item(), ok=ok)))
print(json.dumps(dict(summary=True, tenants=len(a.tenant), worst_rel_err=worst, tol=TOL,
                      failed=failed)))
sys.exit(1 if failed else 0)
