//! `forge-node`: the Forge node binary.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// A Forge inference node.
///
/// Exit codes: 0 success; 1 runtime failure (model missing or corrupt, download
/// failed, generation error); 2 usage error (bad flags or arguments); 3 (audit
/// only) the audit failed.
#[derive(Debug, Parser)]
#[command(name = "forge-node", version, about, long_about = None, after_help = "Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 (audit) the audit failed.")]
struct Cli {
    /// Rayon worker threads for the CPU kernels (default: all cores).
    #[arg(long, global = true, env = "FORGE_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) into the model cache.
    Pull(commands::PullArgs),
    /// Generate an answer to one prompt.
    Generate(commands::GenerateArgs),
    /// Generate a new Groth16 key pair for the CU circuit (one-party setup).
    Setup(commands::SetupArgs),
    /// Serve the OpenAI-compatible API (chat, completions, receipts, accounts).
    Serve(commands::ServeArgs),
    /// Manage API-key accounts and their CU balances in the ledger.
    Account(commands::AccountArgs),
    /// Challenge a node for one of its receipts with a fresh seed and re-execute its openings.
    Audit(commands::AuditArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FORGE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
    {
        eprintln!("error: --threads {n}: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        // The only command with its own exit codes (a failed audit is 3).
        Command::Audit(args) => {
            return commands::audit(args).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            });
        }
        Command::Pull(args) => commands::pull(args),
        Command::Generate(args) => commands::generate(args),
        Command::Serve(args) => commands::serve(args),
        Command::Account(args) => commands::account(args),
        Command::Setup(args) => commands::setup(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
