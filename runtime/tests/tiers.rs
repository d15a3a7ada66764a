//! Weight tiers through the runtime's `Slot` API, as live instances use it: cold loads from the
//! checkpoint (the cold path), switches from the host cache, loads from the weight pool,
//! promotions into it, prefetches, evictions (a pool slot overwritten by another tenant), a
//! load from a pool slot right after the promotion that fills it, and a slot reloaded right
//! after it promoted — after each, the slot's outputs on batches of several requests (rows of
//! different lengths, two passes back to back) equal a freshly loaded model's bit for bit, on
//! the same device and dtype.
//!
//! On the CPU (the twin, in CI) always; on a GPU (`GpuPool`, device-to-device copies on the
//! pool stream, the cold path through pinned staging) where `PTM_TEST_CUDA=1`, else it prints
//! a skip line. The GPU part also checks that a pool that does not fit beside the executors is
//! refused with the numbers.

use ptm_runtime::slot::{Executors, PoolSize};
use ptm_runtime::zoo::{make_zoo, model_dir, Arch};
use ptm_runtime::{
    ArchLayout, Batch, Config, DType, Device, Eviction, HeadOutput, KernelOptions, Model, Slot,
    SlotHost, Zoo,
};
use std::path::Path;

fn gpu_enabled(test: &str) -> bool {
    let on = std::env::var("PTM_TEST_CUDA").is_ok_and(|v| v == "1");
    if !on {
        println!("SKIPPED {test} on a GPU: set PTM_TEST_CUDA=1 on a machine with an NVIDIA GPU");
    }
    on
}

/// Two passes: a batch joining three requests' rows (lengths 5, 2 + 9 and 40) and one of a
/// single short row.
fn passes(vocab: u32) -> Vec<Batch> {
    let row = |n: u32, k: u32| -> Vec<u32> { (0..n).map(|i| (i * k + 7) % vocab).collect() };
    vec![
        Batch::from_rows(&[row(5, 31), row(2, 17), row(9, 5), row(40, 37)], 0, None).unwrap(),
        Batch::from_rows(&[vec![2, 5, 3]], 0, None).unwrap(),
    ]
}

struct Fixture {
    _tmp: tempfile::TempDir,
    zoo: Zoo,
    root: std::path::PathBuf,
    host: SlotHost,
    fresh: Vec<Vec<HeadOutput>>,
    batches: Vec<Batch>,
}

impl Fixture {
    fn dir(&self, i: usize) -> std::path::PathBuf {
        model_dir(&self.root, &self.zoo.models[i].name)
    }

    fn name(&self, i: usize) -> &str {
        &self.zoo.models[i].name
    }

    /// Asserts `slot` holds tenant `t` and runs like a fresh load of it.
    fn check(&self, slot: &mut Slot, t: usize, what: &str) {
        assert_eq!(slot.tenant().map(|i| i.name.as_str()), Some(self.name(t)));
        let got = slot.forward_many(&self.batches).unwrap();
        assert_eq!(got.len(), self.fresh[t].len());
        for (k, (g, w)) in got.iter().zip(&self.fresh[t]).enumerate() {
            assert_eq!(g.shape, w.shape, "{what}: tenant {t}, pass {k}");
            assert!(
                g.values == w.values,
                "{what}: tenant {t}, pass {k}: max diff {}",
                g.values
                    .iter()
                    .zip(&w.values)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max)
            );
        }
    }
}

/// A zoo of `arch` written in `written`, served in `dtype` on `device` with a pool of 2 slots.
fn fixture(device: Device, arch: Arch, written: DType, dtype: DType) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let zoo = make_zoo(arch, 4, &root, written, 21).unwrap();
    let dir = |i: usize| model_dir(&root, &zoo.models[i].name);
    let cfg0 = Config::from_file(&dir(0).join("config.json")).unwrap();
    let max = zoo.models.iter().map(|m| m.labels).max().unwrap_or(1);
    let layout = ArchLayout::new(&cfg0, max, dtype).unwrap();
    let executors = Executors {
        count: 2,
        max_batch: 4,
        max_seq: 64,
    };
    let host = SlotHost::new(
        device,
        layout,
        4,
        Eviction::Refuse,
        KernelOptions::default(),
    )
    .unwrap()
    .with_pool(PoolSize::Tenants(2), executors)
    .unwrap();
    assert_eq!(host.pool_slots(), Some(2));
    for (i, m) in zoo.models.iter().enumerate() {
        host.register(&m.name, &dir(i)).unwrap();
    }
    let batches = passes(cfg0.vocab_size as u32);
    let fresh = (0..zoo.models.len())
        .map(|i| {
            let mut m = Model::load(&dir(i), device, dtype).unwrap();
            batches.iter().map(|b| m.forward(b).unwrap()).collect()
        })
        .collect();
    Fixture {
        _tmp: tmp,
        zoo,
        root,
        host,
        fresh,
        batches,
    }
}

/// The sequence of tier moves, checked after each.
fn run_tiers(f: &Fixture, label: &str) {
    let h = &f.host;
    let mut a = h.slot(4, 64).unwrap();
    let mut b = h.slot(4, 64).unwrap();
    // A: tenant 0 from the host, promoted into pool slot 0; B loads it from there at once
    // (ordered after the promotion on the device).
    a.switch(h, f.name(0)).unwrap();
    a.promote(h, 0).unwrap();
    b.load_pool(h, 0, f.name(0)).unwrap();
    f.check(&mut a, 0, label);
    f.check(&mut b, 0, label);
    // Tenant 2 prefetched into pool slot 1; A loads it from there.
    h.prefetch(1, f.name(2)).unwrap();
    a.load_pool(h, 1, f.name(2)).unwrap();
    f.check(&mut a, 2, label);
    // Eviction: tenant 3 read cold from its file by B and promoted over tenant 0 in slot 0;
    // A loads it from there.
    b.load_file(h, f.name(3), &f.dir(3)).unwrap();
    f.check(&mut b, 3, label);
    b.promote(h, 0).unwrap();
    a.load_pool(h, 0, f.name(3)).unwrap();
    f.check(&mut a, 3, label);
    // B promotes tenant 1 over slot 1 and is reloaded at once (its arena overwritten only
    // after the promotion read it); A then loads slot 1: tenant 1, not what B holds now.
    b.switch(h, f.name(1)).unwrap();
    b.promote(h, 1).unwrap();
    b.load_pool(h, 0, f.name(3)).unwrap();
    a.load_pool(h, 1, f.name(1)).unwrap();
    f.check(&mut a, 1, label);
    f.check(&mut b, 3, label);
    // A promoted tenant overwritten by a prefetch of another: loads see the new one.
    h.prefetch(1, f.name(0)).unwrap();
    b.load_pool(h, 1, f.name(0)).unwrap();
    f.check(&mut b, 0, label);
    f.check(&mut a, 1, label);
    // A cold load after pool loads.
    a.load_file(h, f.name(2), &f.dir(2)).unwrap();
    f.check(&mut a, 2, label);
    // Refusals name what was wrong; the slot can load again afterwards.
    let e = a.load_pool(h, 1, f.name(3)).unwrap_err().to_string();
    assert!(e.contains("holds `") && e.contains("not `"), "{label}: {e}");
    let e = a.load_pool(h, 7, f.name(3)).unwrap_err().to_string();
    assert!(e.contains("out of range (the pool has 2)"), "{label}: {e}");
    a.load_pool(h, 0, f.name(3)).unwrap();
    f.check(&mut a, 3, label);
}

/// A checkpoint with a NaN weight: the cold load is refused naming the tensor and leaves the
/// slot empty; a good load works afterwards.
fn bad_checkpoint(f: &Fixture, label: &str) {
    let h = &f.host;
    let mut s = h.slot(4, 64).unwrap();
    s.switch(h, f.name(1)).unwrap();
    let bad = tempfile::tempdir().unwrap();
    copy_model(&f.dir(1), bad.path());
    let file = bad.path().join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    match f.zoo.dtype {
        DType::Fp32 => bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes()),
        _ => bytes[n - 2..].copy_from_slice(&0x7e00u16.to_le_bytes()),
    }
    std::fs::write(&file, bytes).unwrap();
    let e = s.load_file(h, "bad", bad.path()).unwrap_err().to_string();
    assert!(e.contains("not finite"), "{label}: {e}");
    assert!(
        s.tenant().is_none(),
        "{label}: a failed cold load leaves the slot empty"
    );
    s.load_file(h, f.name(1), &f.dir(1)).unwrap();
    f.check(&mut s, 1, label);
}

fn copy_model(from: &Path, to: &Path) {
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

#[test]
fn cpu_tiers_equal_fresh_loads() {
    for (written, dtype) in [(DType::Fp32, DType::Fp32), (DType::Fp32, DType::Fp16)] {
        let f = fixture(Device::Cpu, Arch::Tiny, written, dtype);
        let label = format!("cpu {written}→{dtype}");
        run_tiers(&f, &label);
        bad_checkpoint(&f, &label);
    }
}

#[test]
fn gpu_tiers_equal_fresh_loads() {
    if !gpu_enabled("gpu_tiers_equal_fresh_loads") {
        return;
    }
    for (arch, written, dtype) in [
        (Arch::Tiny, DType::Fp32, DType::Fp32),
        (Arch::Tiny, DType::Fp32, DType::Fp16),
        // Several cold-path chunks (16 MB each) per tenant, in the serving dtype.
        (Arch::MiniLmL6, DType::Fp16, DType::Fp16),
        (Arch::MiniLmL6, DType::Fp32, DType::Bf16),
    ] {
        let f = fixture(Device::Cuda(0), arch, written, dtype);
        let label = format!("cuda:0 {arch} {written}→{dtype}");
        run_tiers(&f, &label);
        bad_checkpoint(&f, &label);
        println!("{label}: pool loads, promotions, prefetches, evictions and cold loads bit-identical to fresh loads");
    }
}

#[test]
fn gpu_pool_that_does_not_fit_is_refused_with_the_numbers() {
    if !gpu_enabled("gpu_pool_that_does_not_fit_is_refused_with_the_numbers") {
        return;
    }
    let cfg = Arch::BertBase.config(ptm_runtime::Task::Embedding, 0);
    let layout = ArchLayout::new(&cfg, 2, DType::Fp16).unwrap();
    let host = || {
        SlotHost::new(
            Device::Cuda(0),
            layout.clone(),
            1,
            Eviction::Refuse,
            KernelOptions::default(),
        )
        .unwrap()
    };
    let executors = Executors {
        count: 4,
        max_batch: 32,
        max_seq: 128,
    };
    let e = host()
        .with_pool(PoolSize::Tenants(100_000), executors)
        .err()
        .unwrap()
        .to_string();
    println!("{e}");
    assert!(
        e.contains("100000 tenants") && e.contains("has room for") && e.contains("4 executors"),
        "{e}"
    );
    // `Fit` takes what fits, at most what is asked.
    let h = host()
        .with_pool(PoolSize::Fit { at_most: 3 }, executors)
        .unwrap();
    assert_eq!(h.pool_slots(), Some(3));
}
