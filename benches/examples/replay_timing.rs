//! What one spot-check cell's replay costs on SmolLM2 at a short, a middle
//! and a long key/value prefix: the least time of 200 calls (a shared
//! machine's noise only ever adds), on a 2-thread pool, for
//!
//! - `rows`: [`Model::replay_cell_rows_in`] on the prefix's rows as an
//!   opening holds them (one `Vec` per row), what the spot checker does;
//! - `concat`: the rows gathered into one array first, then
//!   [`Model::replay_cell_in`]: what the spot checker did before stop 22.
//!
//! `cargo run --release -p forge-benches --example replay_timing`. To time
//! an earlier commit's `replay_cell_in`, copy this file there and drop the
//! `rows` call (papers/results/replay-ab.md).

use std::time::Instant;

use anyhow::{Context, Result};
use forge_benches::util::default_model_path;
use forge_engine::gguf::GgufFile;
use forge_engine::{Backend, Model, Numerics};

fn main() -> Result<()> {
    let path = default_model_path().context("no model: run `forge-node pull` first")?;
    let model = Model::from_gguf(&GgufFile::open(&path)?, Backend::Cpu)?;
    let cfg = model.config().clone();
    let width = 2 * cfg.kv_dim();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let input: Vec<f32> = (0..cfg.d_model).map(|i| (i % 17) as f32 / 17.0).collect();
    for t in [60usize, 300, 560] {
        // Any values do: the replay's cost does not depend on them.
        let rows: Vec<Vec<f32>> = (0..t)
            .map(|p| {
                (0..width)
                    .map(|i| (((p * 31 + i) * 7919) % 1000) as f32 / 1000.0 - 0.5)
                    .collect()
            })
            .collect();
        let (mut concat, mut rowwise) = (f64::MAX, f64::MAX);
        for _ in 0..200 {
            let started = Instant::now();
            pool.install(|| -> Result<()> {
                let prefix = rows.concat();
                std::hint::black_box(model.replay_cell_in(Numerics::Int8, 5, &input, &prefix)?);
                Ok(())
            })?;
            concat = concat.min(started.elapsed().as_secs_f64());
            let started = Instant::now();
            pool.install(|| -> Result<()> {
                std::hint::black_box(model.replay_cell_rows_in(
                    Numerics::Int8,
                    5,
                    &input,
                    &rows,
                )?);
                Ok(())
            })?;
            rowwise = rowwise.min(started.elapsed().as_secs_f64());
        }
        println!(
            "prefix of {t} positions: rows {:.1} us, concat {:.1} us",
            rowwise * 1e6,
            concat * 1e6
        );
    }
    Ok(())
}
