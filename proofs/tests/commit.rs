//! The commitment sink on a real (tiny) model.

use std::ops::ControlFlow;

use forge_engine::{
    GenerateRequest, Generation, Model, SamplingParams, TraceRecorder, TraceSink, f16, generate,
};
use forge_proofs::{
    CommitError, Commitment, CommitmentSink, DType, KV_BLOCK, MerkleError, MerkleTree,
    OUTPUT_BLOCK, OpenedRows, RowGroup, SinkOptions, leaf_hash, row_blocks,
};

use crate::common::{self, D_MODEL, LAYERS};

fn request(model: &Model) -> GenerateRequest {
    GenerateRequest {
        prompt: model
            .tokenizer()
            .encode("<|im_start|>user\nhello there<|im_end|>")
            .unwrap(),
        max_tokens: 6,
        sampling: SamplingParams {
            seed: 5,
            ..SamplingParams::default()
        },
        stop: vec![],
    }
}

fn run(model: &Model, sink: &mut dyn TraceSink) -> Generation {
    generate(model, &request(model), Some(sink), |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
}

fn committed(model: &Model, opts: SinkOptions) -> (Generation, Commitment) {
    let mut sink = CommitmentSink::with_options(D_MODEL, opts).unwrap();
    let generation = run(model, &mut sink);
    (generation, sink.finish().unwrap())
}

/// The root by the definition, from a recorder's rows (already layer-major):
/// every layer's output rows, then every layer's key/value rows (kept in
/// f16, the CPU engine's trace), in blocks of `OUTPUT_BLOCK` and `KV_BLOCK`
/// positions.
fn recorder_root(rec: &TraceRecorder) -> [u8; 32] {
    let blocks = |group: RowGroup, rows: Vec<((usize, usize), &[f32])>| {
        rows.chunk_by(|a, b| a.0.0 == b.0.0)
            .flat_map(|layer| layer.chunks(group.block()))
            .map(|block| {
                let ((l, t), _) = block[0];
                let rows: Vec<f32> = block.iter().flat_map(|(_, row)| row.to_vec()).collect();
                let n = block.len() as u32;
                leaf_hash(group, l as u32, t as u32, n, DType::F32KvF16, &rows).unwrap()
            })
            .collect::<Vec<_>>()
    };
    let mut leaves = blocks(RowGroup::Output, rec.rows().collect());
    leaves.extend(blocks(RowGroup::KeyValue, rec.kv_rows().collect()));
    MerkleTree::from_leaves(leaves).root()
}

/// Feeds a recorder's rows to `sink` as the engine would, layer by layer.
fn replay(rec: &TraceRecorder, sink: &mut dyn TraceSink) {
    for ((l, p), row) in rec.kv_rows() {
        sink.record_kv(l, p, row.len(), row);
    }
    for ((l, p), row) in rec.rows() {
        sink.record(l, p, row);
    }
}

#[test]
fn the_root_is_deterministic_and_equals_the_recorders_tree() {
    let (model, _dir) = common::tiny_model(1);
    let (generation, a) = committed(&model, SinkOptions::default());
    let (_, b) = committed(&model, SinkOptions::default());
    assert_eq!(a.root(), b.root(), "same model, same request, same root");

    let t = generation.prompt_tokens + generation.tokens.len() - 1;
    assert_eq!(generation.work.positions() as usize, t);
    assert_eq!((a.layers(), a.positions(), a.start()), (LAYERS, t, 0));
    assert!(
        t > OUTPUT_BLOCK,
        "the trace spans a full output block and a partial one"
    );
    assert_eq!(
        a.tree().len(),
        LAYERS * (row_blocks(RowGroup::Output, t) + row_blocks(RowGroup::KeyValue, t)),
        "blocks of output rows and of key/value rows"
    );
    assert_eq!(row_blocks(RowGroup::KeyValue, t), t.div_ceil(KV_BLOCK));

    let mut rec = TraceRecorder::new(D_MODEL);
    run(&model, &mut rec);
    assert_eq!(rec.len(), LAYERS * t);
    assert_eq!(rec.kv_rows().count(), LAYERS * t);
    assert_eq!(a.root(), recorder_root(&rec));
    for ((l, p), row) in rec.rows() {
        assert_eq!(a.row(l, p).unwrap(), row, "row {l},{p}");
    }
    for ((l, p), row) in rec.kv_rows() {
        assert_eq!(a.kv_row(l, p).unwrap(), row, "kv row {l},{p}");
    }

    let mut replayed = CommitmentSink::new(D_MODEL).unwrap();
    replay(&rec, &mut replayed);
    assert_eq!(
        replayed.finish().unwrap().root(),
        a.root(),
        "the root does not depend on how calls interleave"
    );

    let (_, other) = committed(&common::tiny_model(2).0, SinkOptions::default());
    assert_ne!(a.root(), other.root(), "other weights, other root");
}

#[test]
fn one_flipped_bit_in_one_row_changes_the_root() {
    let (model, _dir) = common::tiny_model(1);
    let mut rec = TraceRecorder::new(D_MODEL);
    run(&model, &mut rec);
    // `flip`: (key/value row?, layer, pos, bit).
    let feed = |flip: Option<(bool, usize, usize, usize)>| {
        let mut sink = CommitmentSink::new(D_MODEL).unwrap();
        let flipped = |kv: bool, l: usize, p: usize, row: &[f32]| {
            let mut row = row.to_vec();
            if let Some((fkv, fl, fp, bit)) = flip
                && (fkv, fl, fp) == (kv, l, p)
            {
                let i = bit % row.len();
                row[i] = if kv {
                    // Key/value rows are kept in f16: flip a bit of the f16.
                    let h = f16::from_f32(row[i]).to_bits() ^ (1 << (bit % 16));
                    f16::from_bits(h).to_f32()
                } else {
                    f32::from_bits(row[i].to_bits() ^ (1 << (bit % 32)))
                };
            }
            row
        };
        for ((l, p), row) in rec.kv_rows() {
            sink.record_kv(l, p, row.len(), &flipped(true, l, p, row));
        }
        for ((l, p), row) in rec.rows() {
            sink.record(l, p, &flipped(false, l, p, row));
        }
        sink.finish().unwrap().root()
    };
    let honest = feed(None);
    assert_eq!(honest, recorder_root(&rec));
    for (kv, l, p, bit) in [
        (false, 0, 0, 0),
        (false, LAYERS - 1, 3, 31),
        (false, 1, 2, 77),
        (true, 0, 0, 5),
        (true, LAYERS - 1, 2, 63),
    ] {
        assert_ne!(
            feed(Some((kv, l, p, bit))),
            honest,
            "flip in kv={kv} layer {l} pos {p} bit {bit}"
        );
    }
}

#[test]
fn the_commitment_reports_what_it_cost() {
    let (model, _dir) = common::tiny_model(1);
    let timed = SinkOptions {
        timed: true,
        ..SinkOptions::default()
    };
    let (_, c) = committed(&model, timed);
    let cost = c.cost();
    // Every record call of a timed sink is timed on the engine's side, and finishing
    // (drain + tree) takes some time.
    assert!(cost.engine_thread > std::time::Duration::ZERO, "{cost:?}");
    assert!(cost.finish > std::time::Duration::ZERO, "{cost:?}");
    // Rows were hashed, and the time it took is counted.
    assert!(cost.hashing > std::time::Duration::ZERO, "{cost:?}");
}

#[test]
fn the_decode_rows_cost_is_kept_apart_from_the_prompts() {
    let zero = std::time::Duration::ZERO;
    let sink_of = |timed: bool| {
        let opts = SinkOptions {
            timed,
            ..SinkOptions::default()
        };
        CommitmentSink::with_options(D_MODEL, opts).unwrap()
    };
    let run = |mut sink: CommitmentSink, prompt: usize, decode: usize| {
        let (rows, kv) = (vec![0.25f32; prompt * D_MODEL], vec![0.75f32; prompt * 8]);
        for l in 0..LAYERS {
            sink.record_kv(l, 0, 8, &kv);
            sink.record(l, 0, &rows);
        }
        let (row, kv) = (vec![0.5f32; D_MODEL], vec![1.5f32; 8]);
        for t in prompt..prompt + decode {
            for l in 0..LAYERS {
                sink.record_kv(l, t, 8, &kv);
                sink.record(l, t, &row);
            }
        }
        sink.finish().unwrap()
    };
    let commit = |prompt: usize, decode: usize| run(sink_of(true), prompt, decode).cost();
    // A prompt alone (one call per layer): nothing is decode.
    let cost = commit(3 * OUTPUT_BLOCK, 0);
    assert!(cost.hashing > zero && cost.engine_thread > zero, "{cost:?}");
    assert_eq!(
        (cost.decode_hashing, cost.decode_engine_thread),
        (zero, zero)
    );
    // Rows one position at a time: each part is counted, and is a part of
    // the whole.
    let cost = commit(OUTPUT_BLOCK + 3, KV_BLOCK);
    assert!(cost.decode_hashing > zero, "{cost:?}");
    assert!(cost.decode_engine_thread > zero, "{cost:?}");
    assert!(cost.decode_hashing <= cost.hashing, "{cost:?}");
    assert!(cost.decode_engine_thread <= cost.engine_thread, "{cost:?}");
    // A sink that does not time its calls (as servers run it) commits the
    // same, and counts no engine-thread time.
    let timed = run(sink_of(true), OUTPUT_BLOCK + 3, KV_BLOCK);
    let plain = run(sink_of(false), OUTPUT_BLOCK + 3, KV_BLOCK);
    assert_eq!(plain.root(), timed.root());
    let cost = plain.cost();
    assert_eq!(
        (cost.engine_thread, cost.decode_engine_thread),
        (zero, zero)
    );
    assert!(
        cost.hashing > zero && cost.decode_hashing > zero,
        "{cost:?}"
    );
}

#[test]
fn a_one_thread_pool_commits_the_same_root() {
    // The hashing jobs go to the recording thread's rayon pool. With one
    // thread, that thread is the engine's, busy generating and then in
    // `finish`, which must absorb every group no job reached (and must not
    // wait for a job that cannot run); with a capacity of 1 the recording
    // thread absorbs the backlog itself as it goes.
    let (model, _dir) = common::tiny_model(1);
    let (_, reference) = committed(&model, SinkOptions::default());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for channel_capacity in [1, 64] {
        let opts = SinkOptions {
            channel_capacity,
            ..SinkOptions::default()
        };
        let (_, c) = pool.install(|| committed(&model, opts));
        assert_eq!(c.root(), reference.root(), "capacity {channel_capacity}");
        assert_eq!(c.row(1, 2).unwrap(), reference.row(1, 2).unwrap());
        let cost = c.cost();
        assert!(cost.hashing_inline <= cost.hashing, "{cost:?}");
    }
    // A recording thread that never enters the pool's parallel loops (so no
    // job runs) and a capacity of 1: from the second waiting group on, it
    // absorbs the backlog itself.
    let row = vec![0.5f32; D_MODEL];
    let c = pool.install(|| {
        let opts = SinkOptions {
            channel_capacity: 1,
            ..SinkOptions::default()
        };
        let mut sink = CommitmentSink::with_options(D_MODEL, opts).unwrap();
        for pos in 0..4 * OUTPUT_BLOCK {
            for l in 0..LAYERS {
                sink.record_kv(l, pos, D_MODEL, &row);
                sink.record(l, pos, &row);
            }
        }
        sink.finish().unwrap()
    });
    let cost = c.cost();
    assert!(cost.hashing_inline > std::time::Duration::ZERO, "{cost:?}");
    assert!(cost.hashing_inline <= cost.hashing, "{cost:?}");
}

#[test]
fn dropping_an_unfinished_sink_leaves_its_jobs_harmless() {
    // A cancelled sequence drops its sink with groups still queued.
    let (model, _dir) = common::tiny_model(1);
    for _ in 0..8 {
        let mut sink = CommitmentSink::new(D_MODEL).unwrap();
        run(&model, &mut sink);
        drop(sink);
    }
    let (_, a) = committed(&model, SinkOptions::default());
    let (_, b) = committed(&model, SinkOptions::default());
    assert_eq!(a.root(), b.root());
}

/// The same run committed with f16 key/value rows (the CPU engine's
/// trace) and with every row f32: the same rows widened, other roots, and
/// the kept bytes a store of commitments counts are the element types'.
#[test]
fn key_values_kept_in_f16_take_half_their_bytes() {
    let (model, _dir) = common::tiny_model(1);
    let (_, half) = committed(&model, SinkOptions::default());
    let f32_opts = SinkOptions {
        dtype: DType::F32,
        ..SinkOptions::default()
    };
    let (_, full) = committed(&model, f32_opts);
    assert_eq!((half.dtype(), full.dtype()), (DType::F32KvF16, DType::F32));
    assert_ne!(half.root(), full.root(), "the dtype is bound");
    let rows = (LAYERS * half.positions()) as u64;
    // The tiny model's [k | v] rows are d_model wide.
    assert_eq!(
        half.row_bytes(),
        rows * (D_MODEL as u64 * 4 + D_MODEL as u64 * 2)
    );
    assert_eq!(full.row_bytes(), rows * D_MODEL as u64 * 8);
    for l in 0..LAYERS {
        for p in 0..half.positions() {
            assert_eq!(half.kv_row(l, p).unwrap(), full.kv_row(l, p).unwrap());
            assert_eq!(half.row(l, p).unwrap(), full.row(l, p).unwrap());
        }
    }
}

#[test]
fn rows_beyond_the_memory_bound_spill_and_open_the_same() {
    let (model, _dir) = common::tiny_model(1);
    let spill_dir = tempfile::tempdir().unwrap();
    let small = SinkOptions {
        memory_limit: OUTPUT_BLOCK * D_MODEL * 4,
        spill_dir: Some(spill_dir.path().to_path_buf()),
        channel_capacity: 1,
        ..SinkOptions::default()
    };
    let (_, spilled) = committed(&model, small);
    let (_, in_memory) = committed(&model, SinkOptions::default());
    assert_eq!(in_memory.spilled_rows(), 0);
    // The bound holds one block of output rows. Layer 0's first one fills
    // first (the trace is shorter than a key/value block, which closes at
    // the end) and fits; nothing after it does.
    assert!(spilled.positions() > OUTPUT_BLOCK && spilled.positions() < KV_BLOCK);
    assert_eq!(
        spilled.spilled_rows() as usize,
        2 * LAYERS * spilled.positions() - OUTPUT_BLOCK
    );
    assert_eq!(spilled.root(), in_memory.root());
    for l in 0..LAYERS {
        for p in 0..spilled.positions() {
            assert_eq!(spilled.row(l, p).unwrap(), in_memory.row(l, p).unwrap());
            assert_eq!(
                spilled.kv_row(l, p).unwrap(),
                in_memory.kv_row(l, p).unwrap()
            );
        }
    }
    let kv = spilled.open_kv_range(2, 1, 3).unwrap();
    assert_eq!(kv, in_memory.open_kv_range(2, 1, 3).unwrap());
    kv.verify(
        &spilled.root(),
        LAYERS as u32,
        0,
        spilled.positions() as u32,
        spilled.dtype(),
    )
    .unwrap();
    let t = spilled.positions() as u32;
    let opening = spilled.open_range(1, 0, 4).unwrap();
    assert_eq!(opening, in_memory.open_range(1, 0, 4).unwrap());
    opening
        .verify(&spilled.root(), LAYERS as u32, 0, t, spilled.dtype())
        .unwrap();
}

#[test]
fn openings_verify_and_tampered_openings_do_not() {
    let (model, _dir) = common::tiny_model(1);
    let (_, c) = committed(&model, SinkOptions::default());
    let (root, l, t) = (c.root(), LAYERS as u32, c.positions() as u32);
    for layer in 0..LAYERS {
        for a in 0..c.positions() {
            for b in a..c.positions() {
                for o in [c.open_range(layer, a, b), c.open_kv_range(layer, a, b)] {
                    let o = o.unwrap();
                    let first = o.first_pos as usize;
                    assert!(
                        first <= a && b < first + o.rows.len(),
                        "{a}..={b} is inside"
                    );
                    assert_eq!(o.row_at(a as u32), o.rows.row_f32(a - first));
                    o.verify(&root, l, 0, t, c.dtype()).unwrap();
                }
            }
        }
    }
    let o = c.open_range(2, 1, 3).unwrap();
    assert_eq!(
        (o.layer, o.first_pos, o.rows.len()),
        (2, 0, OUTPUT_BLOCK),
        "output rows are opened in whole blocks too"
    );
    assert_eq!(o.row_at(2).unwrap(), c.row(2, 2).unwrap());
    assert_eq!(o.row_at(OUTPUT_BLOCK as u32), None);
    let mut bad = o.clone();
    let w = bad.rows.width();
    bad.rows.f32_values_mut().unwrap()[w + 5] += 1e-6;
    assert!(
        bad.verify(&root, l, 0, t, c.dtype()).is_err(),
        "changed value"
    );
    let mut bad = o.clone();
    bad.layer = 1;
    assert!(
        bad.verify(&root, l, 0, t, c.dtype()).is_err(),
        "claimed for another layer"
    );
    let mut bad = o.clone();
    bad.first_pos = OUTPUT_BLOCK as u32;
    bad.rows.truncate(t as usize - OUTPUT_BLOCK);
    assert!(
        bad.verify(&root, l, 0, t, c.dtype()).is_err(),
        "claimed for other positions"
    );
    let mut bad = o.clone();
    bad.rows.truncate(o.rows.len() - 1);
    assert!(
        bad.verify(&root, l, 0, t, c.dtype()).is_err(),
        "a row dropped"
    );
    assert!(
        o.verify(&root, l, 0, t + OUTPUT_BLOCK as u32, c.dtype())
            .is_err(),
        "another trace shape"
    );
    assert!(
        o.verify(&root, 2, 0, t, c.dtype()).is_err(),
        "layer outside the trace"
    );
    // Key/value blocks are longer than the tiny model's trace: a trace of
    // rows made up here spans a whole one and a partial one.
    let long = synthetic(KV_BLOCK + 5);
    let (c, root, t) = (&long, long.root(), long.positions() as u32);
    let kv = c.open_kv_range(2, 1, 3).unwrap();
    assert_eq!(kv.layer, l + 2, "key/value rows live in group L + l");
    assert_eq!(
        (kv.first_pos, kv.rows.len()),
        (0, KV_BLOCK),
        "widened to the whole first block"
    );
    kv.verify(&root, l, 0, t, c.dtype()).unwrap();
    // A range in the last, partial block ends at the trace's end.
    let tail = c.open_kv_range(1, KV_BLOCK + 1, KV_BLOCK + 1).unwrap();
    assert_eq!(
        (tail.first_pos as usize, tail.rows.len()),
        (KV_BLOCK, t as usize - KV_BLOCK)
    );
    tail.verify(&root, l, 0, t, c.dtype()).unwrap();
    let both = c.open_kv_range(1, 3, KV_BLOCK).unwrap();
    assert_eq!((both.first_pos, both.rows.len()), (0, t as usize));
    both.verify(&root, l, 0, t, c.dtype()).unwrap();
    let o = c.open_range(2, KV_BLOCK, KV_BLOCK).unwrap();
    assert_eq!(
        (o.first_pos as usize, o.rows.len()),
        (KV_BLOCK, OUTPUT_BLOCK.min(t as usize - KV_BLOCK)),
        "output rows keep their own, shorter blocks"
    );
    o.verify(&root, l, 0, t, c.dtype()).unwrap();
    let mut bad = kv.clone();
    bad.rows.remove_row(0);
    bad.first_pos = 1;
    assert!(
        matches!(
            bad.verify(&root, l, 0, t, c.dtype()),
            Err(MerkleError::Unaligned { first: 1, .. })
        ),
        "a block opened from its middle"
    );
    let mut bad = kv.clone();
    bad.rows.truncate(kv.rows.len() - 1);
    assert!(
        matches!(
            bad.verify(&root, l, 0, t, c.dtype()),
            Err(MerkleError::Unaligned { .. })
        ),
        "a block cut short"
    );
    let mut bad = kv.clone();
    // Negated (-0.0 for 0.0).
    let at = (KV_BLOCK - 1) * kv.rows.width();
    let values = bad.rows.f16_values_mut().expect("key/value rows are f16");
    values[at] = -values[at];
    assert!(
        matches!(
            bad.verify(&root, l, 0, t, c.dtype()),
            Err(MerkleError::RootMismatch { .. })
        ),
        "every row of a block is bound, not only those up to the asked position"
    );
    assert_eq!(c.dtype(), DType::F32KvF16, "the CPU engine's trace");
    let mut bad = kv.clone();
    let at = 2 * kv.rows.width() + 1;
    let values = bad.rows.f16_values_mut().expect("key/value rows are f16");
    values[at] = f16::from_bits(values[at].to_bits() ^ 1);
    assert!(
        matches!(
            bad.verify(&root, l, 0, t, c.dtype()),
            Err(MerkleError::RootMismatch { .. })
        ),
        "a key/value value one f16 step away"
    );
    let mut bad = kv.clone();
    // The same values, widened: exact, but not the committed element type.
    bad.rows = OpenedRows::from_f32(kv.rows.width(), kv.rows.to_f32_rows().concat()).unwrap();
    assert!(
        matches!(
            bad.verify(&root, l, 0, t, c.dtype()),
            Err(MerkleError::WrongElem { .. })
        ),
        "key/value rows opened as f32 in a trace that keeps them in f16"
    );
    assert!(
        kv.verify(&root, l, 0, t, DType::F32).is_err(),
        "the receipt's dtype is bound"
    );
    let mut bad = kv.clone();
    bad.layer = 2;
    assert!(
        bad.verify(&root, l, 0, t, c.dtype()).is_err(),
        "key/value rows claimed as output rows"
    );
    let mut bad = o.clone();
    bad.layer = l + 2;
    assert!(
        bad.verify(&root, l, 0, t, c.dtype()).is_err(),
        "output rows claimed as key/value rows"
    );
    assert!(
        kv.verify(&root, l + 1, 0, t, c.dtype()).is_err(),
        "another layer count moves the groups"
    );
    assert!(matches!(
        c.open_range(LAYERS, 0, 0),
        Err(CommitError::NotCommitted { .. })
    ));
    assert!(matches!(
        c.open_range(0, 2, 1),
        Err(CommitError::NotCommitted { .. })
    ));
    assert!(matches!(
        c.row(0, c.positions()),
        Err(CommitError::NotCommitted { .. })
    ));
}

#[test]
fn malformed_recordings_are_typed_errors() {
    let row = vec![0.5f32; D_MODEL];
    let kv = vec![0.25f32; 32];
    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    s.record(0, 0, &row[..D_MODEL - 1]);
    assert!(matches!(
        s.finish(),
        Err(CommitError::RaggedRows { layer: 0, .. })
    ));

    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    s.record_kv(0, 0, 32, &kv);
    s.record_kv(1, 0, 16, &kv);
    assert!(
        matches!(
            s.finish(),
            Err(CommitError::RaggedRows {
                layer: 1,
                width: 32,
                ..
            })
        ),
        "one key/value width per trace"
    );

    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    s.record(0, 0, &row);
    s.record(0, 2, &row);
    assert!(matches!(
        s.finish(),
        Err(CommitError::OutOfOrder {
            layer: 0,
            expected: 1,
            got: 2
        })
    ));

    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    s.record_kv(0, 0, 32, &[kv.clone(), kv.clone()].concat());
    s.record(0, 0, &[row.clone(), row.clone()].concat());
    s.record_kv(1, 0, 32, &[kv.clone(), kv.clone()].concat());
    s.record(1, 0, &row);
    assert!(matches!(
        s.finish(),
        Err(CommitError::Uneven {
            rows: "rows",
            layer: 1,
            end: 1,
            expected_end: 2,
            ..
        })
    ));

    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    s.record_kv(0, 0, 32, &kv);
    s.record(0, 0, &row);
    s.record_kv(1, 3, 32, &kv);
    s.record(1, 0, &row);
    assert!(matches!(
        s.finish(),
        Err(CommitError::Uneven {
            rows: "keys/values",
            layer: 1,
            start: 3,
            ..
        })
    ));

    // Output rows alone are not a trace: every layer's keys and values are committed too.
    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    s.record(0, 0, &row);
    s.record(1, 0, &row);
    s.record_kv(0, 0, 32, &kv);
    assert!(matches!(
        s.finish(),
        Err(CommitError::MissingKeyValues {
            layers: 2,
            kv_layers: 1
        })
    ));

    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    s.record(1, 0, &row);
    assert!(
        matches!(s.finish(), Err(CommitError::Empty)),
        "layer 0 missing"
    );
    assert!(matches!(
        CommitmentSink::new(D_MODEL).unwrap().finish(),
        Err(CommitError::Empty)
    ));

    // A later prefix (positions starting past 0) is fine as long as every layer agrees.
    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    for l in 0..2 {
        s.record_kv(l, 7, 32, &kv);
        s.record(l, 7, &row);
    }
    let c = s.finish().unwrap();
    assert_eq!(
        (c.start(), c.positions(), c.layers(), c.kv_width()),
        (7, 1, 2, 32)
    );
    assert_eq!(c.leaf_index(1, 7).unwrap(), 1);
    assert_eq!(
        c.kv_leaf_index(1, 7).unwrap(),
        3,
        "after both output groups"
    );
    assert_eq!(c.kv_row(1, 7).unwrap(), kv);
}

/// A commitment of `positions` positions of every layer, handed over one
/// position at a time, from rows made up here (every value an f16; rows of
/// nearby positions, layers and kinds differ).
fn synthetic(positions: usize) -> Commitment {
    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    let row = |l: usize, pos: usize, kind: usize| -> Vec<f32> {
        (0..D_MODEL)
            .map(|i| ((l * 7 + pos * 3 + kind + i) % 61) as f32 * 0.25 - 7.0)
            .collect()
    };
    for pos in 0..positions {
        for l in 0..LAYERS {
            s.record_kv(l, pos, D_MODEL, &row(l, pos, 1));
            s.record(l, pos, &row(l, pos, 0));
        }
    }
    s.finish().unwrap()
}

/// A commitment to layer 0's key/value rows as `kv` records them, beside
/// `n` constant output rows.
fn commit_with_outputs(n: usize, kv: &dyn Fn(&mut CommitmentSink)) -> Commitment {
    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    kv(&mut s);
    s.record(0, 0, &vec![0.5f32; n * D_MODEL]);
    s.finish().unwrap()
}

/// Keys and values handed over in two arrays of f16 (as the engine's cache
/// holds them) commit exactly as their interleaved `[k | v]` rows widened
/// to f32 do, across a block boundary; halves of different lengths are
/// ragged rows.
#[test]
fn split_keys_and_values_commit_as_their_interleaved_rows() {
    let (kv_dim, n, cut) = (8, KV_BLOCK + 5, 3);
    let keys: Vec<f32> = (0..n * kv_dim).map(|i| i as f32 * 0.5).collect();
    let values: Vec<f32> = (0..n * kv_dim).map(|i| -(i as f32)).collect();
    let rows: Vec<f32> = keys
        .chunks(kv_dim)
        .zip(values.chunks(kv_dim))
        .flat_map(|(k, v)| [k, v].concat())
        .collect();
    // Every value is an f16 (multiples of 0.5 below 1024).
    let half = |xs: &[f32]| xs.iter().map(|&x| f16::from_f32(x)).collect::<Vec<f16>>();
    let (keys, values) = (half(&keys), half(&values));
    let commit = |kv: &dyn Fn(&mut CommitmentSink)| commit_with_outputs(n, kv);
    let whole = commit(&|s| {
        s.record_kv(0, 0, 2 * kv_dim, &rows[..cut * 2 * kv_dim]);
        s.record_kv(0, cut, 2 * kv_dim, &rows[cut * 2 * kv_dim..]);
    });
    let split = commit(&|s| {
        let (k, v) = (keys.split_at(cut * kv_dim), values.split_at(cut * kv_dim));
        s.record_keys_values(0, 0, kv_dim, k.0, v.0);
        s.record_keys_values(0, cut, kv_dim, k.1, v.1);
    });
    assert_eq!(split.root(), whole.root());
    let mut flipped = values.clone();
    flipped[KV_BLOCK * kv_dim + 1] += f16::ONE;
    let other = commit(&|s| s.record_keys_values(0, 0, kv_dim, &keys, &flipped));
    assert_ne!(
        other.root(),
        whole.root(),
        "a value in the second block is bound"
    );

    let mut s = CommitmentSink::new(D_MODEL).unwrap();
    s.record_keys_values(0, 0, kv_dim, &keys[..kv_dim], &values[..2 * kv_dim]);
    assert!(matches!(
        s.finish(),
        Err(CommitError::RaggedRows { layer: 0, .. })
    ));
}

/// The sink copies whole-word key/value halves straight into its blocks
/// and falls back to an element copy for halves that are not whole 32-bit
/// words (an odd key/value width, or arrays that start between two words):
/// all three commit the same rows.
#[test]
fn split_keys_and_values_commit_the_same_however_they_lie_in_memory() {
    let n = KV_BLOCK + 3;
    for kv_dim in [8, 7] {
        let keys: Vec<f16> = (0..n * kv_dim).map(|i| f16::from_f32(i as f32)).collect();
        let values: Vec<f16> = (0..n * kv_dim)
            .map(|i| f16::from_f32(-0.25 * i as f32))
            .collect();
        let rows: Vec<f32> = keys
            .chunks(kv_dim)
            .zip(values.chunks(kv_dim))
            .flat_map(|(k, v)| k.iter().chain(v).map(|x| x.to_f32()))
            .collect();
        let commit = |kv: &dyn Fn(&mut CommitmentSink)| commit_with_outputs(n, kv);
        let whole = commit(&|s| s.record_kv(0, 0, 2 * kv_dim, &rows));
        let aligned = commit(&|s| {
            for pos in 0..n {
                let at = pos * kv_dim..(pos + 1) * kv_dim;
                s.record_keys_values(0, pos, kv_dim, &keys[at.clone()], &values[at]);
            }
        });
        // The same values one f16 into their arrays: between two words.
        let shifted = |xs: &[f16]| [&[f16::ZERO][..], xs].concat();
        let (k1, v1) = (shifted(&keys), shifted(&values));
        let between = commit(&|s| s.record_keys_values(0, 0, kv_dim, &k1[1..], &v1[1..]));
        assert_eq!(aligned.root(), whole.root(), "kv_dim {kv_dim}");
        assert_eq!(between.root(), whole.root(), "kv_dim {kv_dim}");
        assert_eq!(
            between.kv_row(0, n - 1).unwrap(),
            &rows[(n - 1) * 2 * kv_dim..]
        );
    }
}

#[test]
fn opened_rows_are_whole_rows_and_widen_f16_exactly() {
    for bad in [
        OpenedRows::from_f32(0, vec![]),
        OpenedRows::from_f32(3, vec![0.0; 4]),
        OpenedRows::from_f16(2, vec![f16::ZERO; 3]),
    ] {
        assert!(
            matches!(bad, Err(MerkleError::RaggedRows { .. })),
            "{bad:?}"
        );
    }
    let halves: Vec<f16> = [0x3C00u16, 0x8000, 0x0001, 0xFC00, 0x7E01, 0x4000]
        .into_iter()
        .map(f16::from_bits)
        .collect();
    let mut rows = OpenedRows::from_f16(3, halves).unwrap();
    assert_eq!(
        (rows.len(), rows.width(), rows.elem()),
        (2, 3, forge_proofs::Elem::F16)
    );
    let first = rows.row_f32(0).unwrap();
    assert_eq!(
        first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        [
            1.0f32.to_bits(),
            (-0.0f32).to_bits(),
            f16::from_bits(1).to_f32().to_bits()
        ]
    );
    assert!(rows.row_f32(1).unwrap()[1].is_nan());
    assert_eq!(rows.row_f32(2), None);
    assert_eq!(
        serde_json::to_value(&rows).unwrap(),
        serde_json::json!([
            [1.0, -0.0, f16::from_bits(1).to_f32()],
            [f32::NEG_INFINITY, null, 2.0]
        ]),
        "the JSON view: rows of numbers (NaN has no JSON number)"
    );
    rows.remove_row(0);
    assert_eq!(rows.len(), 1);
    match rows.values() {
        forge_proofs::RowsRef::F16(v) => assert_eq!(
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            [0xFC00, 0x7E01, 0x4000]
        ),
        forge_proofs::RowsRef::F32(_) => panic!("f16 rows stay f16"),
    }
    rows.remove_row(5);
    rows.truncate(0);
    assert!(rows.is_empty());
    let mut wide = OpenedRows::from_f32(2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(wide.row_f32(1).unwrap()[..], [3.0, 4.0]);
    assert!(wide.f16_values_mut().is_none());
    wide.f32_values_mut().unwrap()[0] = 5.0;
    assert_eq!(wide.to_f32_rows(), vec![vec![5.0, 2.0], vec![3.0, 4.0]]);
}
