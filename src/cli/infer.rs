//! `ptm infer`: run one model on texts; print token ids and the head's output (or JSON).

use anyhow::Context;
use clap::Args;
use ptm_runtime::{DType, Device, Model, Task};
use std::path::PathBuf;

/// `ptm infer …`
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// fp32, fp16 or bf16.
    #[arg(long, default_value = "fp32")]
    dtype: String,
    /// An input text; repeat for a batch.
    #[arg(long = "text", required = true)]
    texts: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `ptm infer`.
pub fn run(a: InferArgs) -> anyhow::Result<()> {
    let device: Device = a.device.parse()?;
    let dtype: DType = a.dtype.parse()?;
    let mut model = Model::load(&a.model, device, dtype)
        .with_context(|| format!("loading {} on {device} in {dtype}", a.model.display()))?;
    let outs = model.infer(&a.texts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outs)?);
        return Ok(());
    }
    for o in &outs {
        println!("text: {}", o.text);
        println!("token_ids: {:?}", o.token_ids);
        match o.task {
            Task::SequenceClassification => {
                println!("logits ({}): {:?}", o.labels.join(", "), o.values)
            }
            Task::TokenClassification => {
                for (t, row) in o.values.chunks(o.shape[1].max(1)).enumerate() {
                    println!("token {t} logits: {row:?}");
                }
            }
            Task::Embedding => println!("embedding [{}]: {:?}", o.values.len(), o.values),
        }
    }
    Ok(())
}
