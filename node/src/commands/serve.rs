//! `forge-node serve`: the OpenAI-compatible API over the model.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::serve::Listener as _;
use clap::Args;
use forge_api::{AppState, CuKeySource, FileConfig, Ledger, ReceiptSigner, ServerOptions, router};
use forge_engine::{Backend, Model};

/// Arguments of `serve`. Every option but `--config` and `--backend` can also
/// come from a `FORGE_*` variable or the `--config` file.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Configuration precedence: command-line flags, then FORGE_* environment \
variables, then the TOML file given with --config (keys: listen, model, \
model_name, max_concurrent, max_queue, request_timeout_secs, body_limit_bytes, \
default_max_tokens, price_milli_per_cu, price_surge_percent, receipt_workers, \
audit_retain_mib, \
api_keys, ledger), \
then the defaults shown.

Accounts: once the ledger holds any account (created with `forge-node account \
create`, or registered from --api-key), every request must send \
`Authorization: Bearer <key>`, and each request's worst-case cost must be \
covered by the account's balance (credit it with `forge-node account credit`).

The listening address is printed on stdout once bound (`listening on \
http://ADDR`); --listen 127.0.0.1:0 picks a free port.")]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FORGE_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// GGUF model file [default: the pulled SmolLM2-135M-Instruct, fetched on first use].
    #[arg(long, env = "FORGE_MODEL", value_name = "GGUF")]
    model: Option<PathBuf>,
    /// The model's id in the API [default: the file name without `.gguf`].
    #[arg(long, env = "FORGE_MODEL_NAME", value_name = "ID")]
    model_name: Option<String>,
    /// Sequences generated together (continuous batching) [default: 8].
    #[arg(long, env = "FORGE_MAX_CONCURRENT", value_name = "N")]
    max_concurrent: Option<usize>,
    /// Sequences (one per choice) that may wait for a generation slot; beyond, 429 with Retry-After [default: 32].
    #[arg(long, env = "FORGE_MAX_QUEUE", value_name = "N")]
    max_queue: Option<usize>,
    /// Per-request time limit in seconds, queue wait included [default: 300].
    #[arg(long, env = "FORGE_REQUEST_TIMEOUT_SECS", value_name = "SECS")]
    request_timeout_secs: Option<u64>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "FORGE_BODY_LIMIT_BYTES", value_name = "BYTES")]
    body_limit_bytes: Option<usize>,
    /// max_tokens of requests that set none, bounded by the context [default: 1024].
    #[arg(long, env = "FORGE_DEFAULT_MAX_TOKENS", value_name = "N")]
    default_max_tokens: Option<usize>,
    /// Price in thousandths of a CU charged per CU served, at idle [default: 1000].
    #[arg(long, env = "FORGE_PRICE_MILLI_PER_CU", value_name = "MILLI")]
    price_milli_per_cu: Option<u64>,
    /// How far the price rises above that, in percent, once the sequences
    /// running or queued fill every slot of --max-concurrent; linear in
    /// between; a request keeps the price quoted on arrival (0: a fixed
    /// price) [default: 100].
    #[arg(long, env = "FORGE_PRICE_SURGE_PERCENT", value_name = "PERCENT")]
    price_surge_percent: Option<u64>,
    /// Threads building receipts (one Groth16 proof each) [default: 1].
    #[arg(long, env = "FORGE_RECEIPT_WORKERS", value_name = "N")]
    receipt_workers: Option<usize>,
    /// MiB of committed rows kept after the answers so auditors can challenge them (POST /v1/receipts/{id}/openings, `forge-node audit`); the oldest go first; 0 keeps none [default: 1024].
    #[arg(long, env = "FORGE_AUDIT_RETAIN_MIB", value_name = "MIB")]
    audit_retain_mib: Option<u64>,
    /// API key to accept (repeatable; FORGE_API_KEYS is comma-separated); each is registered as a ledger account.
    #[arg(
        long = "api-key",
        env = "FORGE_API_KEYS",
        value_name = "KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,
    /// The ledger database [default: $FORGE_HOME/ledger.sqlite].
    #[arg(long, env = "FORGE_LEDGER", value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "FORGE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Compute backend: cpu (exact kernels), flex, wgpu, cuda.
    #[arg(long, env = "FORGE_BACKEND", default_value = "cpu")]
    backend: Backend,
}

/// Everything `serve` runs with, after precedence is applied.
#[derive(Debug)]
struct Settings {
    listen: SocketAddr,
    model: Option<PathBuf>,
    model_name: Option<String>,
    options: ServerOptions,
    api_keys: Vec<String>,
    ledger: PathBuf,
    backend: Backend,
}

impl Settings {
    /// Flags and env (clap already prefers flags) over the file, over defaults.
    fn resolve(args: ServeArgs, file: FileConfig, home: &Path) -> Result<Self> {
        let d = ServerOptions::default();
        let listen = match (args.listen, file.listen) {
            (Some(a), _) => a,
            (None, Some(s)) => s
                .parse()
                .with_context(|| format!("config `listen = {s:?}` is not an address"))?,
            (None, None) => forge_api::DEFAULT_LISTEN.parse()?,
        };
        let options = ServerOptions {
            max_concurrent: args
                .max_concurrent
                .or(file.max_concurrent)
                .unwrap_or(d.max_concurrent),
            max_queue: args.max_queue.or(file.max_queue).unwrap_or(d.max_queue),
            request_timeout: args
                .request_timeout_secs
                .or(file.request_timeout_secs)
                .map_or(d.request_timeout, Duration::from_secs),
            body_limit: args
                .body_limit_bytes
                .or(file.body_limit_bytes)
                .unwrap_or(d.body_limit),
            default_max_tokens: args
                .default_max_tokens
                .or(file.default_max_tokens)
                .unwrap_or(d.default_max_tokens),
            price_milli_per_cu: args
                .price_milli_per_cu
                .or(file.price_milli_per_cu)
                .unwrap_or(d.price_milli_per_cu),
            price_surge_percent: args
                .price_surge_percent
                .or(file.price_surge_percent)
                .unwrap_or(d.price_surge_percent),
            receipt_workers: args
                .receipt_workers
                .or(file.receipt_workers)
                .unwrap_or(d.receipt_workers),
            audit_retain_bytes: args
                .audit_retain_mib
                .or(file.audit_retain_mib)
                .map_or(d.audit_retain_bytes, |mib| mib.saturating_mul(1 << 20)),
            ..d
        };
        anyhow::ensure!(
            options.max_concurrent >= 1,
            "max_concurrent must be at least 1"
        );
        anyhow::ensure!(
            options.receipt_workers >= 1,
            "receipt_workers must be at least 1"
        );
        let api_keys = if args.api_keys.is_empty() {
            file.api_keys.unwrap_or_default()
        } else {
            args.api_keys
        };
        anyhow::ensure!(
            api_keys.iter().all(|k| !k.trim().is_empty()),
            "an API key is empty"
        );
        Ok(Self {
            listen,
            model: args.model.or(file.model),
            model_name: args.model_name.or(file.model_name),
            options,
            api_keys,
            ledger: args
                .ledger
                .or(file.ledger)
                .unwrap_or_else(|| home.join("ledger.sqlite")),
            backend: args.backend,
        })
    }
}

/// Binds, answers 503 while the model loads, then serves until SIGINT/SIGTERM.
pub(crate) fn serve(args: ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let home = forge_node::forge_home()?;
    let s = Settings::resolve(args, file, &home)?;
    let ledger = Ledger::open(&s.ledger)
        .with_context(|| format!("opening the ledger {}", s.ledger.display()))?;
    for key in &s.api_keys {
        let account = ledger.register_key(key.trim())?;
        tracing::info!(account = %account.name, "API key registered");
    }
    let state = AppState::new(s.options.clone(), ledger);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(state, s, home))
}

async fn run(state: AppState, s: Settings, home: PathBuf) -> Result<()> {
    let listener = forge_api::bind(s.listen)
        .await
        .with_context(|| format!("binding {}", s.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    tracing::info!(%addr, max_concurrent = s.options.max_concurrent, "serving (the model is loading)");
    let app = router(state.clone());
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
    });
    let (model, backend, name) = (s.model.clone(), s.backend, s.model_name.clone());
    let mut loading =
        tokio::task::spawn_blocking(move || load(model.as_deref(), backend, name, &home));
    tokio::select! {
        served = &mut server => return finished(served),
        loaded = &mut loading => {
            let (model, name, signer) = match loaded.context("the model loader panicked")? {
                Ok(l) => l,
                Err(e) => {
                    server.abort();
                    return Err(e);
                }
            };
            state.install(model, &name, signer)?;
            tracing::info!(model = %name, "ready");
        }
    }
    finished(server.await)
}

fn finished(r: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<()> {
    r.context("the server task failed")?.context("serving HTTP")
}

/// The model (pulled on first use when no path is given), its API id, and
/// the receipt signer (node key in `home`, development CU keys).
fn load(
    model: Option<&Path>,
    backend: Backend,
    name: Option<String>,
    home: &Path,
) -> Result<(Model, String, ReceiptSigner)> {
    let path = super::resolve_model(model)?;
    let model =
        Model::load(&path, backend).with_context(|| format!("loading {}", path.display()))?;
    // A server decodes for long: worth a one-off copy of the weights.
    let huge = model.use_huge_pages();
    tracing::info!(mib = huge >> 20, "weights on 2 MiB pages");
    let name = name.unwrap_or_else(|| {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        file.strip_suffix(".gguf")
            .map(str::to_string)
            .unwrap_or(file)
    });
    let (signer, vk, source) =
        ReceiptSigner::load(home).context("loading the node key and CU keys")?;
    let node_key: String = signer
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match source {
        CuKeySource::Setup(pk) => {
            tracing::info!(proving_key = %pk.display(), verifying_key = %vk.display(), "CU keys from `forge-node setup`")
        }
        CuKeySource::Canonical => {
            tracing::info!(verifying_key = %vk.display(), "the project's canonical CU keys (embedded)")
        }
    }
    tracing::info!(model = %path.display(), %node_key, "model and keys loaded");
    Ok((model, name, signer))
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
