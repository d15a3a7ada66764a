//! The PET slot's CPU twin: blocks round-trip exactly, a mixed batch with a tenant per row (in
//! any order) equals each tenant alone, loads come from the tier that holds the block and
//! evict the least recently used tenant, a caller may place a tenant in a slot of its choice,
//! and sizes a slot cannot take are refused by name.

use super::{rel_err, row_values, rows, set, specs, zoo};
use ptm_runtime::bert::Rounding;
use ptm_runtime::pet::block::{pack, BlockLayout};
use ptm_runtime::pet::{
    forward_mixed, Backbone, PetId, PetSlot, PetSlotConfig, PetTenant, PetZoo, Segment, Tier,
};
use ptm_runtime::{Batch, DType, Device};
use std::path::Path;

/// A CPU slot over zoo `z` in `dir` with `gpu` pool and `host` tier slots, every tenant
/// registered in index order.
fn slot(dir: &Path, z: &PetZoo, dtype: DType, gpu: usize, host: usize) -> PetSlot {
    let backbone = dir.join(&z.backbone);
    let cfg = Backbone::load(&backbone, dtype).unwrap().config().clone();
    let config = PetSlotConfig::for_zoo(z, &cfg, dtype, (gpu, host), (32, 64));
    let mut s = PetSlot::new(&backbone, dtype, Device::Cpu, config).unwrap();
    let dirs: Vec<_> = z.tenants.iter().map(|t| dir.join(&t.name)).collect();
    let ids = s.register_all(&dirs, 3).unwrap();
    assert_eq!(
        ids,
        (0..z.tenants.len() as u32).map(PetId).collect::<Vec<_>>()
    );
    s
}

#[test]
fn blocks_round_trip_exactly() {
    for (name, spec) in specs() {
        let (d, z) = zoo(&spec, 3);
        let b = Backbone::load(&d.path().join(&z.backbone), DType::Bf16).unwrap();
        let layers = b.config().num_hidden_layers;
        let batch = Batch::from_rows(&rows(&[7, 3, 12], 4), 0, None).unwrap();
        for t in &z.tenants {
            let loaded = PetTenant::load(&d.path().join(&t.name), &b).unwrap();
            let (layout, bytes) = pack(&loaded, layers, DType::Bf16).unwrap();
            assert!(
                layout.bytes() <= BlockLayout::bound_bytes(t.parameters, b.config(), DType::Bf16)
            );
            assert_eq!(layout.stages(), layers + 2);
            let unpacked = layout.unpack(&bytes).unwrap();
            assert_eq!(unpacked.parameters, loaded.parameters);
            let seg = [Segment { tenant: 0, rows: 3 }];
            let a = forward_mixed(&b, &[&loaded], &batch, &seg, Rounding::ALL).unwrap();
            let u = forward_mixed(&b, &[&unpacked], &batch, &seg, Rounding::ALL).unwrap();
            assert_eq!(
                a, u,
                "{name} {}: the unpacked block computes the same",
                t.name
            );
            // Stages are in forward order and cover the block.
            let ranges: Vec<_> = (0..layout.stages())
                .map(|i| layout.stage_bytes(i))
                .collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().unwrap().end, layout.bytes());
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            assert!(layout.unpack(&bytes[..bytes.len() - 1]).is_err());
        }
    }
}

#[test]
fn each_row_of_a_mixed_batch_equals_its_tenant_alone() {
    for (name, spec) in specs() {
        let (d, z) = zoo(&spec, 6);
        for (dtype, tol) in [(DType::Fp32, 1e-6), (DType::Fp16, 1e-3)] {
            let reference = set(d.path(), &z, dtype);
            let mut s = slot(d.path(), &z, dtype, 6, 6);
            // Rows of six tenants, interleaved and repeated: the slot groups them.
            let per_row = [3u32, 0, 5, 3, 1, 2, 4, 0, 2];
            let lengths = [7, 3, 12, 5, 9, 4, 11, 2, 6];
            let all = rows(&lengths, 9);
            let batch = Batch::from_rows(&all, 0, None).unwrap();
            let tenants: Vec<PetId> = per_row.iter().map(|&t| PetId(t)).collect();
            let m = s.forward_mixed(&batch, &tenants).unwrap();
            assert_eq!(m.outputs.len(), per_row.len());
            // Every tenant came from the host tier (registered there) into the pool.
            assert_eq!(m.loads.len(), 6);
            assert!(m
                .loads
                .iter()
                .all(|l| l.from == Tier::Host && l.to == Tier::Gpu));
            for (r, (&t, &len)) in per_row.iter().zip(&lengths).enumerate() {
                let alone = reference
                    .forward_one(
                        t as usize,
                        &Batch::from_rows(&all[r..r + 1], 0, None).unwrap(),
                    )
                    .unwrap();
                let got = &m.outputs[r];
                assert_eq!(got.task, alone.task);
                assert_eq!(got.shape[0], 1);
                let (g, w) = (row_values(got, 0, len), row_values(&alone, 0, len));
                let e = rel_err(&g, &w);
                assert!(
                    e <= tol,
                    "{name} {dtype}: row {r} (tenant {t}): {e:e} > {tol:e}"
                );
            }
            // A second pass finds every tenant resident: no loads.
            assert!(s.forward_mixed(&batch, &tenants).unwrap().loads.is_empty());
        }
    }
}

#[test]
fn loads_come_from_the_highest_tier_and_evict_the_least_recently_used() {
    let (name, spec) = specs().remove(0);
    let (d, z) = zoo(&spec, 6);
    // Two pool slots, three host slots: tenants 0..3 registered into the host tier.
    let mut s = slot(d.path(), &z, DType::Fp32, 2, 3);
    assert_eq!(
        (0..6).map(|t| s.tier(PetId(t))).collect::<Vec<_>>(),
        [
            Tier::Host,
            Tier::Host,
            Tier::Host,
            Tier::Disk,
            Tier::Disk,
            Tier::Disk
        ],
        "{name}"
    );
    let mem = s.memory();
    assert_eq!((mem.tenants, mem.host_tenants, mem.gpu_tenants), (6, 3, 0));
    assert!(mem.block_bytes <= 6 * mem.slot_bytes && mem.host_directory_bytes > 0);
    let batch = |n: usize| Batch::from_rows(&rows(&vec![5; n], 3), 0, None).unwrap();
    let m = s.forward_mixed(&batch(2), &[PetId(0), PetId(4)]).unwrap();
    // Tenant 0 from the host; tenant 4 read from disk into the host tier (evicting the least
    // recently used: tenant 1), then into the pool.
    let moves: Vec<_> = m
        .loads
        .iter()
        .map(|l| (l.tenant.0, l.from, l.to, l.evicted))
        .collect();
    assert_eq!(
        moves,
        [
            (0, Tier::Host, Tier::Gpu, None),
            (4, Tier::Disk, Tier::Host, Some(PetId(1))),
            (4, Tier::Host, Tier::Gpu, None),
        ]
    );
    assert_eq!(s.tier(PetId(1)), Tier::Disk);
    // A third tenant evicts the pool's least recently used (tenant 0).
    let m = s.forward_mixed(&batch(1), &[PetId(2)]).unwrap();
    assert_eq!(m.loads[0].evicted, Some(PetId(0)));
    assert_eq!(s.tier(PetId(0)), Tier::Host);
    // More distinct tenants than pool slots in one batch: refused.
    let e = s
        .forward_mixed(&batch(3), &[PetId(3), PetId(4), PetId(5)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("GPU adapter pool has 2 slots"), "{e}");
    // A caller (the ledger) names the slot: its tenant is evicted.
    let slot2 = s.slot_of(PetId(2), Tier::Gpu).unwrap();
    let l = s.load(PetId(5), Tier::Gpu, Some(slot2)).unwrap();
    assert_eq!(
        l.last().map(|l| (l.slot, l.evicted)),
        Some((slot2, Some(PetId(2))))
    );
    assert_eq!(s.slot_of(PetId(5), Tier::Gpu), Some(slot2));
    assert!(
        s.load(PetId(5), Tier::Gpu, None).unwrap().is_empty(),
        "already there"
    );
    assert!(s.load(PetId(5), Tier::Disk, None).is_err());
    assert!(s.evict(PetId(5), Tier::Gpu).unwrap());
    assert!(!s.evict(PetId(5), Tier::Gpu).unwrap());
    // The runs above still compute what the tenants alone compute.
    let reference = set(d.path(), &z, DType::Fp32);
    let b = batch(2);
    let m = s.forward_mixed(&b, &[PetId(5), PetId(3)]).unwrap();
    for (r, t) in [5usize, 3].into_iter().enumerate() {
        let alone = reference
            .forward_one(
                t,
                &Batch::from_rows(&[b.row_ids(r).to_vec()], 0, None).unwrap(),
            )
            .unwrap();
        let e = rel_err(&row_values(&m.outputs[r], 0, 5), &row_values(&alone, 0, 5));
        assert!(e < 1e-6, "tenant {t}: {e:e}");
    }
}

#[test]
fn sizes_a_slot_cannot_take_are_refused_by_name() {
    let (_, spec) = specs().remove(0);
    let (d, z) = zoo(&spec, 3);
    let backbone = d.path().join(&z.backbone);
    let cfg = Backbone::load(&backbone, DType::Fp32)
        .unwrap()
        .config()
        .clone();
    let good = PetSlotConfig::for_zoo(&z, &cfg, DType::Fp32, (2, 0), (4, 32));
    for (field, bad) in [
        (
            "gpu_slots",
            PetSlotConfig {
                gpu_slots: 0,
                ..good
            },
        ),
        (
            "max_batch",
            PetSlotConfig {
                max_batch: 5000,
                ..good
            },
        ),
        (
            "max_rank",
            PetSlotConfig {
                max_rank: 0,
                ..good
            },
        ),
    ] {
        let e = PetSlot::new(&backbone, DType::Fp32, Device::Cpu, bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(field), "{field}: {e}");
    }
    for (field, small) in [
        (
            "slot_bytes",
            PetSlotConfig {
                slot_bytes: 64,
                ..good
            },
        ),
        (
            "max_rank",
            PetSlotConfig {
                max_rank: 1,
                ..good
            },
        ),
        (
            "max_labels",
            PetSlotConfig {
                max_labels: 1,
                ..good
            },
        ),
    ] {
        let mut s = PetSlot::new(&backbone, DType::Fp32, Device::Cpu, small).unwrap();
        let e = s
            .register(&d.path().join(&z.tenants[0].name))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
    // With no host tier, a load reads the disk; a batch too large is refused.
    let mut s = PetSlot::new(&backbone, DType::Fp32, Device::Cpu, good).unwrap();
    let t = s.register(&d.path().join(&z.tenants[1].name)).unwrap();
    assert_eq!(s.tier(t), Tier::Disk);
    let l = s.load(t, Tier::Gpu, None).unwrap();
    assert_eq!((l.len(), l[0].from), (1, Tier::Disk));
    let big = Batch::from_rows(&rows(&[3; 5], 1), 0, None).unwrap();
    let e = s.forward_mixed(&big, &[t; 5]).unwrap_err().to_string();
    assert!(e.contains("at most 4"), "{e}");
    let e = s.forward_mixed(&big, &[t; 4]).unwrap_err().to_string();
    assert!(e.contains("one per row"), "{e}");
    assert!(
        s.register(&d.path().join(&z.tenants[1].name)).is_err(),
        "registered twice"
    );
}

#[test]
fn bench_measurements_keep_their_books() {
    use ptm_runtime::pet::bench::{load_all, register_zoo, time_misses, time_resident};
    let (_, spec) = specs().remove(0);
    let (d, z) = zoo(&spec, 6);
    let backbone = d.path().join(&z.backbone);
    let cfg = Backbone::load(&backbone, DType::Fp32)
        .unwrap()
        .config()
        .clone();
    let config = PetSlotConfig::for_zoo(&z, &cfg, DType::Fp32, (6, 6), (4, 16));
    let mut s = PetSlot::new(&backbone, DType::Fp32, Device::Cpu, config).unwrap();
    let (ids, _) = register_zoo(&mut s, d.path(), &z, 5, 2).unwrap();
    assert_eq!(ids.len(), 5);
    load_all(&mut s, &ids).unwrap();
    assert_eq!(s.memory().gpu_tenants, 5);
    let b = Batch::from_rows(&rows(&[6, 6, 6, 6], 1), 0, None).unwrap();
    let tenants = [ids[0], ids[1], ids[2], ids[0]];
    let t = time_resident(&mut s, &b, &tenants, 1, 2).unwrap();
    assert_eq!(
        (t.call_ms.len(), t.device_ms.len()),
        (2, 0),
        "no device time on the CPU"
    );
    for pipelined in [true, false] {
        let t = time_misses(&mut s, &b, &tenants, 2, pipelined, 2).unwrap();
        assert_eq!(t.call_ms.len(), 2);
    }
    // The missing tenants came back into the pool.
    assert_eq!(s.tier(ids[0]), Tier::Gpu);
    // A pool of exactly the batch's tenants keeps them resident.
    let small = PetSlotConfig {
        gpu_slots: 2,
        ..config
    };
    let mut s = PetSlot::new(&backbone, DType::Fp32, Device::Cpu, small).unwrap();
    register_zoo(&mut s, d.path(), &z, 3, 1).unwrap();
    let two = [ids[0], ids[1], ids[0], ids[1]];
    assert!(time_resident(&mut s, &b, &two, 1, 1).is_ok());
}
