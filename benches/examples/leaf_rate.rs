//! How fast blake3 hashes one leaf, by the leaf's size: the sizes a
//! SmolLM2 trace's leaves take (16 output rows of 2,304 bytes; 16 or 64
//! key/value rows of 768 bytes, f16), each followed by the 13 bytes of
//! fields a leaf ends with, keyed as leaves are.
//!
//! blake3 hashes the whole 1 KiB chunks of one input side by side, 16 at a
//! time with AVX-512, then 8, then 4: a 12-chunk leaf runs at 8 and 4 lanes.
//! "Cold" evicts the leaves from the caches first (a 256 MiB read), as a
//! hashing job finds them: 16 positions after their first row, with a whole
//! model's weights streamed through the caches since. "A row at a time"
//! feeds each hot leaf to blake3 one row per call, as a sink hashing each
//! row when the engine hands it over (still in cache) would: a call then
//! holds two or three chunks, hashed one lane at a time, so this column
//! says why the sink gathers a block of rows and hashes it whole, cold.
//!
//! `cargo run --release -p forge-benches --example leaf_rate [ROUNDS]`:
//! ROUNDS (default 30) timed passes of each kind over 30 leaves of each
//! size (one per SmolLM2 layer); prints the median and best rate in GB/s.

use std::time::Instant;

use forge_benches::util::{median, positional_arg};

/// Leaves hashed per pass: one per SmolLM2 layer.
const LEAVES: usize = 30;

/// How a pass feeds the leaves to blake3.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    /// Each leaf whole, after the caches were flushed.
    Cold,
    /// Each leaf whole, from the caches.
    Hot,
    /// Each leaf a row per `update` call, from the caches: what hashing
    /// rows as they come (while the engine's caches still hold them) would
    /// cost; the same digests.
    RowByRow,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = positional_arg(&args, 1, 30)?;
    // (name, leaf bytes, row bytes)
    let sizes = [
        ("16 key/value rows (12 KiB)", 16 * 768, 768),
        ("16 output rows (36 KiB)", 16 * 2304, 2304),
        ("32 key/value rows (24 KiB)", 32 * 768, 768),
        ("64 key/value rows (48 KiB)", 64 * 768, 768),
    ];
    let passes = [Pass::Cold, Pass::Hot, Pass::RowByRow];
    let evict: Vec<u8> = vec![1; 256 << 20];
    let key = blake3::derive_key("forge.kv.v3", b"");
    println!(
        "| leaf | cold GB/s (median / best) | hot GB/s (median / best) | hot, a row at a time \
         GB/s (median / best) |"
    );
    println!("|---|--:|--:|--:|");
    for (name, bytes, row) in sizes {
        let leaves: Vec<u8> = (0..bytes * LEAVES).map(|i| (i * 31 + 7) as u8).collect();
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..passes.len() * rounds {
            let which = round % passes.len();
            let pass = passes[which];
            if pass == Pass::Cold {
                let sum = evict.iter().step_by(64).map(|&b| u64::from(b)).sum::<u64>();
                std::hint::black_box(sum);
            }
            let t = Instant::now();
            for leaf in leaves.chunks_exact(bytes) {
                let mut h = blake3::Hasher::new_keyed(&key);
                if pass == Pass::RowByRow {
                    for r in leaf.chunks(row) {
                        h.update(r);
                    }
                } else {
                    h.update(leaf);
                }
                h.update(&[0; 13]);
                std::hint::black_box(h.finalize());
            }
            let secs = t.elapsed().as_secs_f64();
            rates[which].push(leaves.len() as f64 / secs / 1e9);
        }
        let show = |r: &[f64]| {
            let best = r.iter().copied().fold(0.0, f64::max);
            format!("{:.2} / {:.2}", median(r).unwrap_or(0.0), best)
        };
        println!(
            "| {name} | {} | {} | {} |",
            show(&rates[0]),
            show(&rates[1]),
            show(&rates[2])
        );
    }
    Ok(())
}
