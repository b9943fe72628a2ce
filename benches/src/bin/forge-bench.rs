//! `forge-bench`: Forge's benchmark harness. Each subcommand prints a
//! Markdown table and writes it, with the raw figures as JSON, under
//! `papers/results/`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use forge_benches::decode::{self, DecodeArgs};
use forge_benches::proofs::{self, ProofsArgs};
use forge_benches::serve::{self, ServeArgs};
use forge_benches::tolerance::{self, ToleranceArgs};
use tracing_subscriber::EnvFilter;

const EXIT_STATUS: &str = "\
Exit status:
  0  success (also when the llama.cpp reference is unavailable: the table says so)
  1  failure (model missing, engine error, the Forge server cannot start, cannot write the results, ...)
  2  usage error (bad arguments)

Logs go to stderr (RUST_LOG, default info); the table goes to stdout.";

/// Forge's benchmark harness: tables and figures for papers/.
#[derive(Debug, Parser)]
#[command(name = "forge-bench", version, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prefill and decode throughput of forge-engine vs llama.cpp on the same
    /// GGUF, trace-hook overhead, and peak memory.
    #[command(after_help = EXIT_STATUS)]
    Decode(DecodeArgs),
    /// What receipts cost: commitment overhead on decode, CU proof prove and
    /// verify, receipt sizes, offline verification, spot-check re-execution.
    #[command(after_help = EXIT_STATUS)]
    Proofs(ProofsArgs),
    /// One-layer error of a backend that is not batch-invariant (flex, wgpu,
    /// cuda) against the exact CPU kernels: the spot checks' tolerance.
    #[command(after_help = EXIT_STATUS)]
    Tolerance(ToleranceArgs),
    /// TTFT and tokens/s of `forge-node serve` at 1, 4, 8 concurrent
    /// streams, against llama-cpp-python's `llama_cpp.server` on the same
    /// GGUF, both started here on loopback ports.
    #[command(after_help = EXIT_STATUS)]
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    // Usage errors exit with 2 here (clap's convention).
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match &cli.command {
        Command::Decode(args) => decode::run(args).map(|_| ()),
        Command::Proofs(args) => proofs::run(args).map(|_| ()),
        Command::Tolerance(args) => tolerance::run(args).map(|_| ()),
        Command::Serve(args) => serve::run(args).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
