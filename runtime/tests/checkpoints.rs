//! Bad checkpoints are refused naming the tensor and what was expected; unknown architectures
//! and a CUDA request without a GPU are explained.

use ptm_runtime::zoo::{write_model, Arch};
use ptm_runtime::{Config, DType, Device, Error, Model, PackedWeights, Task};
use safetensors::tensor::{serialize, Dtype, TensorView};
use std::path::Path;

fn tiny(dir: &Path) -> Config {
    let cfg = Arch::Tiny.config(Task::SequenceClassification, 3);
    write_model(dir, &cfg, DType::Fp32, 7, 0).expect("tiny model writes");
    cfg
}

/// Rewrites the file through `edit`, which sees and may change each (name, dtype, shape, bytes).
fn rewrite(dir: &Path, edit: impl Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let data = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut ts: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut ts);
    let views: Vec<(String, TensorView)> = ts
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(&path, serialize(views, None).unwrap()).unwrap();
}

fn load_err(dir: &Path, cfg: &Config) -> String {
    let e = PackedWeights::from_file(&dir.join("model.safetensors"), cfg, DType::Fp32).unwrap_err();
    e.to_string()
}

#[test]
fn missing_tensor_is_named() {
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny(d.path());
    rewrite(d.path(), |ts| {
        ts.retain(|t| !t.0.contains("layer.1.intermediate.dense.weight"))
    });
    let e = load_err(d.path(), &cfg);
    assert!(
        e.contains("encoder.layer.1.intermediate.dense.weight"),
        "{e}"
    );
    assert!(e.contains("[64, 32]"), "{e}");
}

#[test]
fn wrong_shape_is_named() {
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny(d.path());
    rewrite(d.path(), |ts| {
        let t = ts.iter_mut().find(|t| t.0 == "classifier.weight").unwrap();
        t.2 = vec![2, 32];
        t.3.truncate(2 * 32 * 4);
    });
    let e = load_err(d.path(), &cfg);
    assert!(
        e.contains("classifier.weight") && e.contains("[3, 32]") && e.contains("[2, 32]"),
        "{e}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny(d.path());
    rewrite(d.path(), |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.0 == "bert.pooler.dense.bias")
            .unwrap();
        t.1 = Dtype::I32;
    });
    let e = load_err(d.path(), &cfg);
    assert!(
        e.contains("bert.pooler.dense.bias") && e.contains("I32"),
        "{e}"
    );
}

#[test]
fn garbage_file_is_refused_with_its_path() {
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny(d.path());
    std::fs::write(d.path().join("model.safetensors"), b"not a checkpoint").unwrap();
    let e = load_err(d.path(), &cfg);
    assert!(
        e.contains("model.safetensors") && e.contains("safetensors"),
        "{e}"
    );
}

#[test]
fn unknown_architecture_is_named() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    let p = d.path().join("config.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"bert\"", "\"xlnet\"");
    std::fs::write(&p, text).unwrap();
    let e = Model::load(d.path(), Device::Cpu, DType::Fp32)
        .err()
        .unwrap();
    assert!(matches!(e, Error::UnknownArchitecture { .. }), "{e}");
    assert!(e.to_string().contains("xlnet"), "{e}");
    let e = "gpt-2".parse::<Arch>().unwrap_err().to_string();
    assert!(e.contains("gpt-2") && e.contains("bert-base"), "{e}");
}

#[test]
fn old_gamma_beta_names_and_unprefixed_names_load() {
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny(d.path());
    let before =
        PackedWeights::from_file(&d.path().join("model.safetensors"), &cfg, DType::Fp32).unwrap();
    rewrite(d.path(), |ts| {
        for t in ts.iter_mut() {
            t.0 =
                t.0.trim_start_matches("bert.")
                    .replace("LayerNorm.weight", "LayerNorm.gamma")
                    .replace("LayerNorm.bias", "LayerNorm.beta");
        }
    });
    let after =
        PackedWeights::from_file(&d.path().join("model.safetensors"), &cfg, DType::Fp32).unwrap();
    assert_eq!(before.bytes, after.bytes);
}

#[test]
fn cuda_without_gpu_says_so() {
    if std::env::var_os("PTM_TEST_CUDA").is_some() {
        println!("SKIPPED cuda_without_gpu_says_so: PTM_TEST_CUDA says a GPU is present");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    match Model::load(d.path(), Device::Cuda(0), DType::Fp16) {
        Err(e @ Error::NoGpu { .. }) => {
            let s = e.to_string();
            assert!(
                s.contains("cuda:0") && s.contains("no usable CUDA GPU"),
                "{s}"
            );
        }
        Err(e) => panic!("expected NoGpu, got {e}"),
        Ok(_) => println!("SKIPPED cuda_without_gpu_says_so: a GPU is present"),
    }
}
