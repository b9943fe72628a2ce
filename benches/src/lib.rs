//! # forge-benches
//!
//! Forge's benchmarks. The `forge-bench` binary produces the tables of the
//! paper (`papers/results/`); the criterion benches (`cargo bench -p
//! forge-benches`) time the engine's kernels on a tiny random model and, when
//! it is present, on SmolLM2.
//!
//! - [`decode`]: `forge-bench decode`, our engine vs llama.cpp on the same
//!   GGUF, prefill and decode throughput, trace-hook overhead, peak memory;
//! - [`tolerance`]: `forge-bench tolerance`, the one-layer error of a
//!   backend that is not batch-invariant against the exact CPU kernels (the
//!   spot checks' published tolerance);
//! - [`proofs`]: `forge-bench proofs`, what receipts cost;
//! - [`serve`]: `forge-bench serve`, `forge-node serve` vs llama.cpp's
//!   server over loopback HTTP: TTFT and tokens/s at 1, 4, 8 streams;
//! - [`llama_cpp`]: the llama.cpp reference, run through llama-cpp-python;
//! - [`prompts`], [`mem`], [`util`]: the prompt set, `/proc` memory figures,
//!   small helpers; [`receipted`]: a prompt generated, committed and
//!   receipted, for the examples that time the checks; [`pair_times`]:
//!   the file of A/B pair times that `commit_ab` writes and pools.

pub mod decode;
pub mod llama_cpp;
pub mod mem;
pub mod pair_times;
pub mod prompts;
pub mod proofs;
pub mod receipted;
pub mod serve;
pub mod tolerance;
pub mod util;
