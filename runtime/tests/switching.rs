//! Switching on the CPU twin: after any sequence of switches across slots, a slot's outputs
//! are bit for bit those of a freshly loaded model of the tenant it holds; the parallel reader
//! packs exactly what the plain reader packs; a full cache refuses or evicts; bad files are
//! named.

use ptm_runtime::switch::read::{read_into_pieces, read_into_with};
use ptm_runtime::zoo::{make_zoo, model_dir, write_model, Arch};
use ptm_runtime::{
    ArchLayout, Batch, Config, CpuSlot, DType, Device, Eviction, HostCache, Model, PackedWeights,
    Task, Zoo,
};
use std::path::Path;

fn zoo(dir: &Path, tenants: usize) -> Zoo {
    make_zoo(Arch::Tiny, tenants, dir, DType::Fp32, 7).expect("zoo")
}

fn arch_of(dir: &Path, zoo: &Zoo, dtype: DType) -> ArchLayout {
    let cfg = Config::from_file(&model_dir(dir, &zoo.models[0].name).join("config.json")).unwrap();
    let max = zoo.models.iter().map(|m| m.labels).max().unwrap_or(1);
    ArchLayout::new(&cfg, max, dtype).unwrap()
}

fn batch() -> Batch {
    let rows = vec![vec![2, 17, 300, 41, 3], vec![2, 999, 3]];
    Batch::from_rows(&rows, 0, None).unwrap()
}

#[test]
fn switches_equal_fresh_loads_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let z = zoo(tmp.path(), 5);
    for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
        let arch = arch_of(tmp.path(), &z, dtype);
        let mut cache = HostCache::plain(arch.clone(), 5, Eviction::Refuse).unwrap();
        for m in &z.models {
            cache
                .register(&m.name, &model_dir(tmp.path(), &m.name))
                .unwrap();
        }
        let mut slots = [CpuSlot::new(&arch), CpuSlot::new(&arch)];
        let order = [
            (0, 0),
            (1, 1),
            (0, 2),
            (1, 0),
            (0, 1),
            (0, 3),
            (1, 4),
            (0, 0),
            (1, 2),
        ];
        let b = batch();
        for (slot, t) in order {
            let name = &z.models[t].name;
            slots[slot].switch(&mut cache, name).unwrap();
            let got = slots[slot].forward(&b).unwrap();
            let mut fresh = Model::load(&model_dir(tmp.path(), name), Device::Cpu, dtype).unwrap();
            let want = fresh.forward(&b).unwrap();
            assert_eq!(got, want, "{dtype}: slot {slot} after switching to {name}");
            // The other slot still holds its own tenant.
            if let Some(other) = slots[1 - slot].tenant().map(|t| t.name.clone()) {
                let got = slots[1 - slot].forward(&b).unwrap();
                let mut f =
                    Model::load(&model_dir(tmp.path(), &other), Device::Cpu, dtype).unwrap();
                assert_eq!(
                    got,
                    f.forward(&b).unwrap(),
                    "{dtype}: slot {} ({other})",
                    1 - slot
                );
            }
        }
    }
}

#[test]
fn parallel_reader_packs_what_the_plain_reader_packs() {
    let tmp = tempfile::tempdir().unwrap();
    let z = zoo(tmp.path(), 3);
    for dtype in [DType::Fp32, DType::Fp16] {
        let arch = arch_of(tmp.path(), &z, dtype);
        for m in &z.models {
            let dir = model_dir(tmp.path(), &m.name);
            let cfg = Config::from_file(&dir.join("config.json")).unwrap();
            let w = PackedWeights::from_file(&dir.join("model.safetensors"), &cfg, dtype).unwrap();
            let mut want = vec![0xAAu8; arch.bytes()];
            arch.pack(&w, &mut want).unwrap();
            for (threads, piece) in [(1, 1 << 20), (4, 256), (3, 100)] {
                let mut got = vec![0x55u8; arch.bytes()];
                read_into_pieces(
                    &dir.join("model.safetensors"),
                    &cfg,
                    &arch,
                    &mut got,
                    threads,
                    piece,
                )
                .unwrap();
                assert!(
                    got == want,
                    "{dtype} {} threads {threads} piece {piece}",
                    m.name
                );
            }
            let back = arch.tenant_weights(&want, &cfg).unwrap();
            assert_eq!(
                back.bytes, w.bytes,
                "{}: unpacking gives the tenant's own layout",
                m.name
            );
        }
    }
}

/// The ranges the reader reports (what the GPU's cold path copies as they land) tile the
/// destination exactly once, and a failing report stops the read with its error.
#[test]
fn landed_ranges_tile_the_destination_once() {
    let tmp = tempfile::tempdir().unwrap();
    let z = zoo(tmp.path(), 1);
    let arch = arch_of(tmp.path(), &z, DType::Fp16);
    let dir = model_dir(tmp.path(), &z.models[0].name);
    let cfg = Config::from_file(&dir.join("config.json")).unwrap();
    let file = dir.join("model.safetensors");
    let mut want = vec![0u8; arch.bytes()];
    read_into_pieces(&file, &cfg, &arch, &mut want, 1, 1 << 20).unwrap();
    for (threads, piece) in [(1, 1 << 20), (4, 300)] {
        let ranges = std::sync::Mutex::new(Vec::new());
        let mut got = vec![0x55u8; arch.bytes()];
        read_into_with(&file, &cfg, &arch, &mut got, threads, piece, &|r| {
            ranges.lock().unwrap().push(r);
            Ok(())
        })
        .unwrap();
        assert!(got == want, "threads {threads} piece {piece}");
        let mut ranges = ranges.into_inner().unwrap();
        ranges.sort_by_key(|r| r.start);
        let mut end = 0;
        for r in &ranges {
            assert_eq!(
                r.start, end,
                "threads {threads} piece {piece}: gap or overlap"
            );
            end = r.end;
        }
        assert_eq!(end, arch.bytes());
    }
    let e = read_into_with(&file, &cfg, &arch, &mut want, 2, 300, &|r| {
        if r.start > 1000 {
            Err(ptm_runtime::Error::Input(format!("stop at {}", r.start)))
        } else {
            Ok(())
        }
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("stop at"), "{e}");
}

#[test]
fn full_cache_refuses_or_evicts() {
    let tmp = tempfile::tempdir().unwrap();
    let z = zoo(tmp.path(), 4);
    let arch = arch_of(tmp.path(), &z, DType::Fp32);
    let dir = |i: usize| model_dir(tmp.path(), &z.models[i].name);
    let name = |i: usize| z.models[i].name.as_str();
    let mut refuse = HostCache::plain(arch.clone(), 2, Eviction::Refuse).unwrap();
    refuse.register(name(0), &dir(0)).unwrap();
    refuse.register(name(1), &dir(1)).unwrap();
    let e = refuse.register(name(2), &dir(2)).unwrap_err().to_string();
    assert!(e.contains("full (2 tenants)") && e.contains(name(2)), "{e}");

    let mut lru = HostCache::plain(arch.clone(), 2, Eviction::Lru).unwrap();
    lru.register(name(0), &dir(0)).unwrap();
    lru.register(name(1), &dir(1)).unwrap();
    let mut slot = CpuSlot::new(&arch);
    slot.switch(&mut lru, name(0)).unwrap(); // tenant 0 is now the most recent
    assert_eq!(
        lru.register(name(2), &dir(2)).unwrap().as_deref(),
        Some(name(1))
    );
    let e = slot.switch(&mut lru, name(1)).unwrap_err().to_string();
    assert!(e.contains("not registered") && e.contains(name(1)), "{e}");
    assert_eq!(
        lru.tenants(),
        vec![name(0).to_string(), name(2).to_string()]
    );
    assert!(HostCache::plain(arch, 0, Eviction::Lru).is_err());
}

#[test]
fn bad_tenants_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let z = zoo(tmp.path(), 1);
    let arch = arch_of(tmp.path(), &z, DType::Fp32);
    let mut cache = HostCache::plain(arch.clone(), 2, Eviction::Refuse).unwrap();
    // Another architecture.
    let other = tmp.path().join("minilm");
    let cfg = Arch::MiniLmL6.config(Task::Embedding, 0);
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let e = cache.register("minilm", &other).unwrap_err().to_string();
    assert!(e.contains("minilm") && e.contains("6 layers"), "{e}");
    // A file whose tensor has the wrong shape: a tiny model written with a wider vocabulary.
    let wrong = tmp.path().join("wrong");
    let mut big = Arch::Tiny.config(Task::Embedding, 0);
    big.vocab_size += 1;
    write_model(&wrong, &big, DType::Fp32, 1, 0).unwrap();
    std::fs::write(
        wrong.join("config.json"),
        serde_json::to_string(&Arch::Tiny.config(Task::Embedding, 0)).unwrap(),
    )
    .unwrap();
    let e = cache.register("wrong", &wrong).unwrap_err().to_string();
    assert!(e.contains("word_embeddings") && e.contains("1001"), "{e}");
    // A truncated file.
    let cut = tmp.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    let src = model_dir(tmp.path(), &z.models[0].name);
    std::fs::copy(src.join("config.json"), cut.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(cut.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = cache.register("cut", &cut).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    // The failures left the cache usable.
    cache.register("ok", &src).unwrap();
    assert_eq!(cache.tenants(), vec!["ok".to_string()]);
}
