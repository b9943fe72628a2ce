//! How fast blake3 hashes one leaf, by the leaf's size: the sizes a
//! SmolLM2 trace's leaves take (16 output rows of 2,304 bytes; 16 or 64
//! key/value rows of 768 bytes, f16), each followed by the 13 bytes of
//! fields a leaf ends with, keyed as leaves are.
//!
//! blake3 hashes the whole 1 KiB chunks of one input side by side, 16 at a
//! time with AVX-512, then 8, then 4: a 12-chunk leaf runs at 8 and 4 lanes.
//! "Cold" evicts the leaves from the caches first (a 256 MiB read), as a
//! hashing job finds them: 16 positions after their first row, with a whole
//! model's weights streamed through the caches since.
//!
//! `cargo run --release -p forge-benches --example leaf_rate [ROUNDS]`:
//! ROUNDS (default 30) timed passes over 30 leaves of each size (one per
//! SmolLM2 layer); prints the median and best rate in GB/s.

use std::time::Instant;

use forge_benches::util::{median, positional_arg};

/// Leaves hashed per pass: one per SmolLM2 layer.
const LEAVES: usize = 30;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = positional_arg(&args, 1, 30)?;
    let sizes = [
        ("16 key/value rows (12 KiB)", 16 * 768),
        ("16 output rows (36 KiB)", 16 * 2304),
        ("32 key/value rows (24 KiB)", 32 * 768),
        ("64 key/value rows (48 KiB)", 64 * 768),
    ];
    let evict: Vec<u8> = vec![1; 256 << 20];
    let key = blake3::derive_key("forge.kv.v3", b"");
    println!("| leaf | cold GB/s (median / best) | hot GB/s (median / best) |");
    println!("|---|--:|--:|");
    for (name, bytes) in sizes {
        let leaves: Vec<u8> = (0..bytes * LEAVES).map(|i| (i * 31 + 7) as u8).collect();
        let mut rates = [Vec::new(), Vec::new()];
        for round in 0..2 * rounds {
            let cold = round % 2 == 0;
            if cold {
                let sum = evict.iter().step_by(64).map(|&b| u64::from(b)).sum::<u64>();
                std::hint::black_box(sum);
            }
            let t = Instant::now();
            for leaf in leaves.chunks_exact(bytes) {
                let mut h = blake3::Hasher::new_keyed(&key);
                h.update(leaf);
                h.update(&[0; 13]);
                std::hint::black_box(h.finalize());
            }
            let secs = t.elapsed().as_secs_f64();
            rates[usize::from(!cold)].push(leaves.len() as f64 / secs / 1e9);
        }
        let show = |r: &[f64]| {
            let best = r.iter().copied().fold(0.0, f64::max);
            format!("{:.2} / {:.2}", median(r).unwrap_or(0.0), best)
        };
        println!("| {name} | {} | {} |", show(&rates[0]), show(&rates[1]));
    }
    Ok(())
}
