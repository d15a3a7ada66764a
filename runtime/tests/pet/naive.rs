//! A straightforward per-tenant reference for fp32 BERT tenants, independent of the runtime's
//! PET code: tensors read by name with the `safetensors` crate, configs with `serde_json`, and
//! the forward pass written out in loops, one unpadded text at a time, following the Hugging
//! Face modules (`BertSelfAttention`, `BertSelfOutput`, …), PEFT's LoRA layer
//! (`y = base(x) + B(A(x)) · alpha/r`) and the `adapters` library's `Adapter.pre_forward` /
//! `forward` / `post_forward`.

use safetensors::SafeTensors;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

type Map = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read(path: &Path) -> Map {
    let data = std::fs::read(path).expect("weights");
    let st = SafeTensors::deserialize(&data).expect("safetensors");
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "fp32 files only");
            let vals = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (n, (v.shape().to_vec(), vals))
        })
        .collect()
}

/// The erf of Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    s * y
}

fn act(name: &str, x: f32) -> f32 {
    let x = f64::from(x);
    (match name {
        "gelu" => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        "relu" => x.max(0.0),
        "swish" | "silu" => x / (1.0 + (-x).exp()),
        "tanh" => x.tanh(),
        other => panic!("activation {other}"),
    }) as f32
}

/// `x [n, in] · W[out, in]ᵀ + b`.
fn linear(x: &[Vec<f32>], w: &(Vec<usize>, Vec<f32>), b: Option<&[f32]>) -> Vec<Vec<f32>> {
    let (out, inp) = (w.0[0], w.0[1]);
    x.iter()
        .map(|row| {
            (0..out)
                .map(|o| {
                    let dot: f64 = (0..inp)
                        .map(|i| f64::from(row[i]) * f64::from(w.1[o * inp + i]))
                        .sum();
                    dot as f32 + b.map_or(0.0, |b| b[o])
                })
                .collect()
        })
        .collect()
}

fn layer_norm(x: &[Vec<f32>], w: &[f32], b: &[f32], eps: f64) -> Vec<Vec<f32>> {
    x.iter()
        .map(|r| {
            let n = r.len() as f64;
            let mean = r.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
            let var = r
                .iter()
                .map(|v| (f64::from(*v) - mean).powi(2))
                .sum::<f64>()
                / n;
            r.iter()
                .enumerate()
                .map(|(i, v)| ((f64::from(*v) - mean) / (var + eps).sqrt()) as f32 * w[i] + b[i])
                .collect()
        })
        .collect()
}

fn add(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect())
        .collect()
}

/// One tenant (or the bare backbone) ready to run.
pub struct Naive {
    base: Map,
    tenant: Map,
    cfg: Value,
    /// `(r, alpha)` of a LoRA tenant.
    lora: Option<(f64, f64)>,
    /// The `adapters` config, adapter name, head config and head tensors.
    adapter: Option<(Value, String)>,
    head: Option<(Value, Map)>,
    task: String,
}

impl Naive {
    /// Reads the backbone in `backbone` and the tenant in `tenant`.
    pub fn new(backbone: &Path, tenant: &Path) -> Self {
        let base = read(&backbone.join("model.safetensors"));
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(backbone.join("config.json")).unwrap())
                .unwrap();
        let ac: Value = serde_json::from_str(
            &std::fs::read_to_string(tenant.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        if ac.get("peft_type").is_some() {
            let t = read(&tenant.join("adapter_model.safetensors"))
                .into_iter()
                .map(|(n, v)| {
                    let n = n.strip_prefix("base_model.model.").unwrap().to_string();
                    (n.strip_prefix("bert.").map(String::from).unwrap_or(n), v)
                })
                .collect();
            let lora = (ac["peft_type"] == "LORA").then(|| {
                (
                    ac["r"].as_f64().unwrap(),
                    ac["lora_alpha"].as_f64().unwrap(),
                )
            });
            let task = ac["task_type"]
                .as_str()
                .unwrap_or("FEATURE_EXTRACTION")
                .to_string();
            Naive {
                base,
                tenant: t,
                cfg,
                lora,
                adapter: None,
                head: None,
                task,
            }
        } else {
            let t = read(&tenant.join("adapter.safetensors"))
                .into_iter()
                .map(|(n, v)| (n.strip_prefix("bert.").map(String::from).unwrap_or(n), v))
                .collect();
            let name = ac["name"].as_str().unwrap().to_string();
            let head = tenant.join("head_config.json").is_file().then(|| {
                let hc: Value = serde_json::from_str(
                    &std::fs::read_to_string(tenant.join("head_config.json")).unwrap(),
                )
                .unwrap();
                (hc, read(&tenant.join("model_head.safetensors")))
            });
            let task = match &head {
                None => "FEATURE_EXTRACTION",
                Some((hc, _)) if hc["config"]["head_type"] == "tagging" => "TOKEN_CLS",
                Some(_) => "SEQ_CLS",
            }
            .to_string();
            Naive {
                base,
                tenant: t,
                cfg,
                lora: None,
                adapter: Some((ac["config"].clone(), name)),
                head,
                task,
            }
        }
    }

    fn base(&self, n: &str) -> &(Vec<usize>, Vec<f32>) {
        self.base
            .get(n)
            .unwrap_or_else(|| panic!("backbone misses {n}"))
    }

    /// Bias of module `m`: the tenant's where it has one.
    fn bias(&self, m: &str) -> &[f32] {
        let n = format!("{m}.bias");
        &self.tenant.get(&n).unwrap_or_else(|| self.base(&n)).1
    }

    /// Linear module `m` with the tenant's LoRA and bias.
    fn lin(&self, m: &str, x: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let mut y = linear(x, self.base(&format!("{m}.weight")), Some(self.bias(m)));
        if let (Some((r, alpha)), Some(a)) =
            (self.lora, self.tenant.get(&format!("{m}.lora_A.weight")))
        {
            let b = &self.tenant[&format!("{m}.lora_B.weight")];
            let d = linear(&linear(x, a, None), b, None);
            let s = (alpha / r) as f32;
            for (yr, dr) in y.iter_mut().zip(d) {
                yr.iter_mut().zip(dr).for_each(|(p, q)| *p += q * s);
            }
        }
        y
    }

    fn ln(&self, m: &str, x: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let eps = self.cfg["layer_norm_eps"].as_f64().unwrap();
        layer_norm(x, &self.base(&format!("{m}.weight")).1, self.bias(m), eps)
    }

    /// The end of a sublayer (`module` is `…attention.output` or `…output`): the
    /// `adapters` library's bottleneck layer around `LN(h + input)`.
    fn sublayer(&self, module: &str, h: Vec<Vec<f32>>, input: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let ln = format!("{module}.LayerNorm");
        let Some((c, name)) = &self.adapter else {
            return self.ln(&ln, &add(&h, input));
        };
        let p = format!("{module}.adapters.{name}");
        let Some(dw) = self.tenant.get(&format!("{p}.adapter_down.0.weight")) else {
            return self.ln(&ln, &add(&h, input));
        };
        // pre_forward
        let residual = h.clone(); // residual_before_ln: true
        let x = if c["original_ln_before"] == true {
            self.ln(&ln, &add(&h, input))
        } else {
            h
        };
        // forward
        let down = linear(
            &x,
            dw,
            Some(&self.tenant[&format!("{p}.adapter_down.0.bias")].1),
        );
        let f = c["non_linearity"].as_str().unwrap();
        let down: Vec<Vec<f32>> = down
            .iter()
            .map(|r| r.iter().map(|v| act(f, *v)).collect())
            .collect();
        let up = linear(
            &down,
            &self.tenant[&format!("{p}.adapter_up.weight")],
            Some(&self.tenant[&format!("{p}.adapter_up.bias")].1),
        );
        let scaling = c["scaling"].as_f64().unwrap_or(1.0) as f32;
        let up: Vec<Vec<f32>> = up
            .iter()
            .map(|r| r.iter().map(|v| v * scaling).collect())
            .collect();
        let output = add(&up, &residual);
        // post_forward
        self.ln(&ln, &add(&output, input))
    }

    /// The head's output for one text of token ids (`[labels]`, `[tokens × labels]` or
    /// `[hidden]`).
    pub fn run(&self, ids: &[u32]) -> Vec<f32> {
        let h = self.cfg["hidden_size"].as_u64().unwrap() as usize;
        let nh = self.cfg["num_attention_heads"].as_u64().unwrap() as usize;
        let layers = self.cfg["num_hidden_layers"].as_u64().unwrap() as usize;
        let dh = h / nh;
        let word = self.base("embeddings.word_embeddings.weight");
        let pos = self.base("embeddings.position_embeddings.weight");
        let typ = self.base("embeddings.token_type_embeddings.weight");
        let emb: Vec<Vec<f32>> = ids
            .iter()
            .enumerate()
            .map(|(p, &id)| {
                (0..h)
                    .map(|j| word.1[id as usize * h + j] + pos.1[p * h + j] + typ.1[j])
                    .collect()
            })
            .collect();
        let mut x = self.ln("embeddings.LayerNorm", &emb);
        for l in 0..layers {
            let p = format!("encoder.layer.{l}");
            let q = self.lin(&format!("{p}.attention.self.query"), &x);
            let k = self.lin(&format!("{p}.attention.self.key"), &x);
            let v = self.lin(&format!("{p}.attention.self.value"), &x);
            let n = x.len();
            let mut ctx = vec![vec![0f32; h]; n];
            for head in 0..nh {
                let o = head * dh;
                for i in 0..n {
                    let s: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..dh)
                                .map(|d| f64::from(q[i][o + d]) * f64::from(k[j][o + d]))
                                .sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for d in 0..dh {
                        ctx[i][o + d] = (0..n)
                            .map(|j| e[j] / z * f64::from(v[j][o + d]))
                            .sum::<f64>() as f32;
                    }
                }
            }
            let a = self.lin(&format!("{p}.attention.output.dense"), &ctx);
            let a = self.sublayer(&format!("{p}.attention.output"), a, &x);
            let u = self.lin(&format!("{p}.intermediate.dense"), &a);
            let u: Vec<Vec<f32>> = u
                .iter()
                .map(|r| r.iter().map(|v| act("gelu", *v)).collect())
                .collect();
            let d = self.lin(&format!("{p}.output.dense"), &u);
            x = self.sublayer(&format!("{p}.output"), d, &a);
        }
        self.head(&x)
    }

    fn head(&self, x: &[Vec<f32>]) -> Vec<f32> {
        match (self.task.as_str(), &self.head) {
            ("FEATURE_EXTRACTION", _) => {
                let h = x[0].len();
                let mean: Vec<f32> = (0..h)
                    .map(|j| x.iter().map(|r| r[j]).sum::<f32>() / x.len() as f32)
                    .collect();
                let n = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                mean.iter().map(|v| v / n).collect()
            }
            ("SEQ_CLS", None) => {
                let pooled = self.lin("pooler.dense", &x[..1]);
                let pooled: Vec<Vec<f32>> = pooled
                    .iter()
                    .map(|r| r.iter().map(|v| v.tanh()).collect())
                    .collect();
                let c = &self.tenant["classifier.weight"];
                linear(&pooled, c, Some(&self.tenant["classifier.bias"].1)).remove(0)
            }
            ("TOKEN_CLS", None) => {
                let c = &self.tenant["classifier.weight"];
                linear(x, c, Some(&self.tenant["classifier.bias"].1)).concat()
            }
            (task, Some((hc, t))) => {
                let name = hc["name"].as_str().unwrap();
                let g = |i: usize, s: &str| &t[&format!("heads.{name}.{i}.{s}")];
                match (task, hc["config"]["layers"].as_u64().unwrap()) {
                    ("SEQ_CLS", 1) => {
                        let pooled = linear(
                            &x[..1],
                            self.base("pooler.dense.weight"),
                            Some(self.bias("pooler.dense")),
                        );
                        let pooled: Vec<Vec<f32>> = pooled
                            .iter()
                            .map(|r| r.iter().map(|v| v.tanh()).collect())
                            .collect();
                        linear(&pooled, g(1, "weight"), Some(&g(1, "bias").1)).remove(0)
                    }
                    ("SEQ_CLS", 2) => {
                        let y = linear(&x[..1], g(1, "weight"), Some(&g(1, "bias").1));
                        let y: Vec<Vec<f32>> = y
                            .iter()
                            .map(|r| r.iter().map(|v| v.tanh()).collect())
                            .collect();
                        linear(&y, g(4, "weight"), Some(&g(4, "bias").1)).remove(0)
                    }
                    (_, _) => linear(x, g(1, "weight"), Some(&g(1, "bias").1)).concat(),
                }
            }
            (t, None) => panic!("task {t}"),
        }
    }
}
