//! `forge-bench serve`: `forge-node serve` against llama-cpp-python's
//! `llama_cpp.server` on the same GGUF, over loopback HTTP, in one run.
//!
//! Both servers are started by the benchmark (Forge with `--threads T
//! --max-concurrent max(8, C)`, llama.cpp with `--n_threads T
//! --n_threads_batch T`) and driven by the same client: streamed chat
//! completions of the prompts of [`crate::prompts::prompt_set`], greedy,
//! `max_tokens` fixed, `stream_options.include_usage`. For each concurrency
//! level C, a run sends C streams at once and waits for all of them (a
//! *wave*); it repeats waves until every prompt was sent at least once
//! (`ceil(prompts / C)` waves), so that every level serves the same mix of
//! prompts. Per stream: TTFT (request sent to first content delta) and
//! decode tokens/s (tokens after the first over the time from first to last
//! content delta). Per run: aggregate tokens/s = completion tokens of all
//! its streams over the summed wall time of its waves. The servers take
//! turns level by level (the order alternates), so both see the same
//! machine load. Tables show medians over streams (TTFT, decode) and over
//! runs (aggregate).

pub mod client;
pub mod metrics;
pub mod servers;
pub mod sse;

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use self::client::{RequestShape, chat_body, first_model_id, stream_chat};
use self::metrics::{AuditStore, EngineCounters, scrape, scrape_audit};
use self::servers::{ForgeConfig, LlamaServerConfig, ServerProcess, default_forge_node};
use self::sse::{TokenCount, decode_tps, ratio};
use crate::decode::{LLAMA_N_CTX, model_path};
use crate::llama_cpp;
use crate::prompts::{BenchPrompt, prompt_set};
use crate::util::{self, median};

/// Tokens per stream of the warm-up wave (not reported).
const WARMUP_TOKENS: usize = 8;
/// Waves the audit store's fill may take at most; it ends sooner, once the
/// store has dropped a commitment.
const MAX_FILL_WAVES: usize = 256;
/// The smallest `--max-concurrent` given to Forge (what the requirement
/// asks for); larger when a level needs more.
const MIN_FORGE_SLOTS: usize = 8;

/// Arguments of `forge-bench serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// The GGUF model, served by both [default: $FORGE_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf]
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Compute threads of each server (Forge's --threads, llama.cpp's
    /// --n_threads and --n_threads_batch).
    #[arg(long, default_value = "2", value_name = "N")]
    pub threads: NonZeroUsize,
    /// max_tokens of every request.
    #[arg(long, default_value = "64", value_name = "N")]
    pub max_tokens: NonZeroUsize,
    /// Concurrency levels: streams sent at once (comma-separated).
    #[arg(
        long,
        default_value = "1,4,8",
        value_delimiter = ',',
        value_name = "C,..."
    )]
    pub concurrency: Vec<NonZeroUsize>,
    /// Prompts of `decode`'s set to send, by name (comma-separated) [default: all:
    /// short, story, explain, prefill-500]
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub prompts: Vec<String>,
    /// Runs per level; tables show medians.
    #[arg(long, default_value = "3", value_name = "N")]
    pub runs: NonZeroUsize,
    /// Let generation end at the end-of-turn token. By default those tokens
    /// get logit_bias -100, so every stream generates exactly --max-tokens
    /// tokens on both servers (as `decode` ignores stop tokens).
    #[arg(long)]
    pub natural_stop: bool,
    /// Sampling temperature of every request (0: greedy; every stream sends
    /// seed 0). Sampled requests also cost the servers their samplers.
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    pub temperature: f32,
    /// The forge-node binary [default: forge-node next to forge-bench]
    #[arg(long, value_name = "PATH")]
    pub forge_node: Option<PathBuf>,
    /// Python with llama-cpp-python[server] (benches/setup_llama_cpp.sh
    /// installs one) [default: .venv-bench/bin/python if it exists, else python3]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Skip the llama.cpp reference (the table says so; no ratios to it).
    #[arg(long)]
    pub no_llama_cpp: bool,
    /// Measure a freshly started Forge server: do not fill its audit store
    /// first. By default the benchmark sends waves like the measured ones
    /// until the store (the commitments kept for auditors, 1 GiB by
    /// default) has reached its bound and reuses the memory of the ones it
    /// drops, as a server that has been running a while does; until then
    /// every committed row takes memory the process never had.
    #[arg(long)]
    pub cold: bool,
    /// Environment variable for the llama.cpp server (repeatable), e.g.
    /// OMP_WAIT_POLICY=PASSIVE (its OpenMP threads spin while idle, taking
    /// the cores from Forge's turns on a small machine).
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::util::parse_env)]
    pub llama_env: Vec<(String, String)>,
    /// Seconds each server may take to start and load the model.
    #[arg(long, default_value = "180", value_name = "SECS")]
    pub startup_timeout_secs: u64,
    /// Seconds one request may take, queueing included.
    #[arg(long, default_value = "600", value_name = "SECS")]
    pub request_timeout_secs: u64,
    /// Markdown output; the JSON goes next to it with the extension `.json`.
    #[arg(long, default_value = "papers/results/serve.md", value_name = "PATH")]
    pub out: PathBuf,
    /// A free-text note printed under the table.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Server {
    /// `forge-node serve`.
    #[serde(rename = "forge")]
    Forge,
    /// `python -m llama_cpp.server`.
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Server::Forge => "forge-node serve",
            Server::LlamaCpp => "llama_cpp.server",
        }
    }
}

/// One stream of a wave.
#[derive(Clone, Debug, Serialize)]
pub struct StreamRecord {
    /// Prompt name.
    pub prompt: String,
    /// When it was sent, seconds after the wave started.
    pub sent_at: f64,
    /// Generated tokens.
    pub tokens: usize,
    /// Where that count comes from.
    pub tokens_from: TokenCount,
    /// Its timeline (seconds after it was sent).
    pub trace: sse::StreamTrace,
}

impl StreamRecord {
    /// Generated tokens.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Seconds to the first content delta.
    pub fn ttft(&self) -> Option<f64> {
        self.trace.first_content
    }

    /// Decode tokens/s.
    pub fn decode_tps(&self) -> Option<f64> {
        decode_tps(
            self.tokens(),
            self.trace.first_content,
            self.trace.last_content,
        )
    }
}

/// C streams sent at once, until all have ended.
#[derive(Clone, Debug, Serialize)]
pub struct Wave {
    /// From the first send to the end of the last stream.
    pub wall_secs: f64,
    /// The streams.
    pub streams: Vec<StreamRecord>,
}

/// One run of one level on one server.
#[derive(Clone, Debug, Serialize)]
pub struct LevelRun {
    /// The server.
    pub server: Server,
    /// Streams at once.
    pub concurrency: usize,
    /// Run index.
    pub run: usize,
    /// Its waves.
    pub waves: Vec<Wave>,
    /// Forge's engine counters over the run (from `/metrics`).
    pub engine: Option<EngineCounters>,
}

impl LevelRun {
    /// Completion tokens of all streams.
    pub fn tokens(&self) -> usize {
        self.streams().map(StreamRecord::tokens).sum()
    }

    /// Summed wall time of the waves.
    pub fn wall_secs(&self) -> f64 {
        self.waves.iter().map(|w| w.wall_secs).sum()
    }

    /// Aggregate tokens/s: all completion tokens over the summed wall time.
    pub fn aggregate_tps(&self) -> Option<f64> {
        let wall = self.wall_secs();
        (wall > 0.0).then(|| self.tokens() as f64 / wall)
    }

    fn streams(&self) -> impl Iterator<Item = &StreamRecord> {
        self.waves.iter().flat_map(|w| w.streams.iter())
    }
}

/// One row of the table: one server at one level.
#[derive(Clone, Debug, Serialize)]
pub struct LevelRow {
    /// The server.
    pub server: Server,
    /// Streams at once.
    pub concurrency: usize,
    /// Streams measured (all runs).
    pub requests: usize,
    /// Median TTFT over streams, ms.
    pub ttft_ms: Option<f64>,
    /// Largest TTFT, ms.
    pub ttft_ms_max: Option<f64>,
    /// Median decode tokens/s of one stream.
    pub decode_tps: Option<f64>,
    /// Median over runs of the aggregate tokens/s.
    pub aggregate_tps: Option<f64>,
    /// This aggregate over the same server's at one stream.
    pub scaling_vs_1: Option<f64>,
    /// Forge's aggregate over llama.cpp's at this level (Forge rows only).
    pub forge_over_llama: Option<f64>,
    /// Median completion tokens per stream.
    pub tokens_per_stream: Option<f64>,
    /// Streams with fewer than max_tokens tokens.
    pub short_streams: usize,
    /// Streams that carried a receipt id.
    pub receipts: usize,
    /// The most streams whose decode intervals (first to last content
    /// delta) overlapped at one instant, over all waves: whether the server
    /// really generated them together.
    pub max_decoding_at_once: usize,
    /// Forge: sequences per batched engine step, on average (all runs).
    pub engine_mean_batch: Option<f64>,
    /// Forge: milliseconds per batched engine step, on average.
    pub engine_step_ms: Option<f64>,
    /// Forge: time in engine steps over the wall time of the waves.
    pub engine_busy: Option<f64>,
}

/// The figures the requirement sets targets for.
#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    /// The level compared with one stream (the largest level run).
    pub top_level: Option<usize>,
    /// Forge's aggregate at `top_level` over its aggregate at 1 stream.
    pub forge_scaling: Option<f64>,
    /// The same for llama.cpp's server.
    pub llama_scaling: Option<f64>,
    /// Forge / llama.cpp aggregate at `top_level`.
    pub forge_over_llama: Option<f64>,
    /// `forge_scaling >= 3` (when `top_level` is 8).
    pub scaling_met: Option<bool>,
    /// `forge_over_llama > 1` (when `top_level` is 8).
    pub ahead_met: Option<bool>,
}

/// Facts about the Forge server.
#[derive(Clone, Debug, Serialize)]
pub struct ForgeInfo {
    /// The binary.
    pub binary: String,
    /// `--max-concurrent`.
    pub max_concurrent: usize,
    /// The model id it serves.
    pub model_id: String,
    /// Seconds from spawn to `/health` 200.
    pub ready_secs: f64,
}

/// Facts about llama.cpp's server.
#[derive(Clone, Debug, Serialize)]
pub struct LlamaInfo {
    /// The interpreter.
    pub python: String,
    /// llama-cpp-python's version.
    pub version: Option<String>,
    /// The server's command line after `python`.
    pub args: Vec<String>,
    /// The model id it serves.
    pub model_id: String,
    /// Seconds from spawn to `/v1/models` 200.
    pub ready_secs: f64,
}

/// How the benchmark brought Forge's audit store to its bound.
#[derive(Clone, Debug, Serialize)]
pub struct AuditFill {
    /// Waves sent, with the run's prompts and max_tokens.
    pub waves: usize,
    /// Streams per wave (the top level's).
    pub streams: usize,
    /// Seconds the fill took.
    pub secs: f64,
    /// The store before the measurement.
    pub store: AuditStore,
    /// Whether the store dropped a commitment (false: the wave cap came first).
    pub reached_bound: bool,
}

/// Everything `forge-bench serve` measured; written as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct ServeReport {
    /// The command line.
    pub command: String,
    /// When it ran.
    pub date: String,
    /// CPU model.
    pub cpu: Option<String>,
    /// 1-minute load average before and after.
    pub load_average: (Option<f64>, Option<f64>),
    /// The GGUF.
    pub model: String,
    /// Compute threads of each server.
    pub threads: usize,
    /// max_tokens of every request.
    pub max_tokens: usize,
    /// temperature of every request.
    pub temperature: f32,
    /// Runs per level.
    pub runs: usize,
    /// Levels, in order.
    pub concurrency: Vec<usize>,
    /// Token ids banned with logit_bias -100 (empty with --natural-stop).
    pub banned_tokens: Vec<u32>,
    /// Prompt names, in the order streams take them.
    pub prompts: Vec<String>,
    /// Prompt tokens per prompt as each server counted them (its usage).
    pub prompt_tokens: Vec<(String, Option<usize>, Option<usize>)>,
    /// The Forge server.
    pub forge: ForgeInfo,
    /// How its audit store was filled before measuring.
    pub audit_fill: Option<AuditFill>,
    /// Why it was not (`--cold`, a server keeping no commitments, ...).
    pub audit_fill_skipped: Option<String>,
    /// llama.cpp's server, when it ran.
    pub llama_cpp: Option<LlamaInfo>,
    /// Why llama.cpp's server did not run or its results were dropped.
    pub llama_cpp_unavailable: Option<String>,
    /// Extra environment given to llama.cpp (`--llama-env`).
    pub llama_env: Vec<(String, String)>,
    /// The table.
    pub rows: Vec<LevelRow>,
    /// The targets.
    pub targets: Targets,
    /// Every run, every stream.
    pub raw: Vec<LevelRun>,
    /// Wall time of the command.
    pub wall_secs: f64,
    /// Free-text note.
    pub note: Option<String>,
}

/// Run the benchmark, print the Markdown table, write it and the JSON.
pub fn run(args: &ServeArgs) -> Result<ServeReport> {
    // One thread: the client only waits on sockets, and every core it does
    // not use is left to the servers under test.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: &ServeArgs) -> Result<ServeReport> {
    let started = Instant::now();
    let load_start = util::load_average();
    let levels = levels(&args.concurrency)?;
    let prompts = select_prompts(prompt_set(), &args.prompts)?;
    let threads = args.threads.get();
    let max_tokens = args.max_tokens.get();
    let runs = args.runs.get();
    let path = model_path(args.model.as_deref())?;
    let forge_bin = match &args.forge_node {
        Some(p) => p.clone(),
        None => default_forge_node()?,
    };
    let http = reqwest::Client::builder()
        // Loopback only: a proxy from the environment must not be used.
        .no_proxy()
        .timeout(Duration::from_secs(args.request_timeout_secs))
        .build()
        .context("cannot build the HTTP client")?;
    let startup_timeout = Duration::from_secs(args.startup_timeout_secs);

    let ledger_dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let max_concurrent = levels
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(MIN_FORGE_SLOTS);
    let forge = ServerProcess::start_forge(
        &http,
        &ForgeConfig {
            binary: &forge_bin,
            model: &path,
            threads,
            max_concurrent,
            ledger: &ledger_dir.path().join("ledger.sqlite"),
            startup_timeout,
        },
    )
    .await
    .context("cannot start the Forge server")?;
    let forge_model = first_model_id(&http, &forge.base_url)
        .await
        .map_err(anyhow::Error::msg)?;
    let forge_info = ForgeInfo {
        binary: forge_bin.display().to_string(),
        max_concurrent,
        model_id: forge_model.clone(),
        ready_secs: forge.ready_secs,
    };

    let banned = if args.natural_stop {
        Vec::new()
    } else {
        stop_tokens(&path)?
    };
    let shape = RequestShape {
        max_tokens,
        banned: banned.clone(),
        temperature: args.temperature,
    };

    // llama.cpp's server, started after Forge's so that both are up (and
    // idle when not driven) for the whole measurement.
    let mut llama: Option<(ServerProcess, LlamaInfo)> = None;
    let mut llama_unavailable: Option<String> = None;
    if args.no_llama_cpp {
        llama_unavailable = Some("skipped (--no-llama-cpp)".into());
    } else {
        let python = llama_cpp::resolve_python(args.python.as_deref());
        match start_llama(
            &http,
            &python,
            &path,
            threads,
            startup_timeout,
            &args.llama_env,
        )
        .await
        {
            Ok(l) => llama = Some(l),
            Err(why) => {
                tracing::warn!(%why, "llama.cpp's server unavailable");
                llama_unavailable = Some(format!(
                    "{why}; python: {}; install it with benches/setup_llama_cpp.sh",
                    python.display()
                ));
            }
        }
    }

    tracing::info!("warm-up");
    let warm = RequestShape {
        max_tokens: WARMUP_TOKENS,
        banned: banned.clone(),
        temperature: args.temperature,
    };
    let all: Vec<&BenchPrompt> = prompts.iter().collect();
    run_wave(&http, &forge.base_url, &forge_model, &all, &warm)
        .await
        .map_err(|e| forge_failed(&forge, "the warm-up", &e))?;
    if let Some((server, info)) = &llama
        && let Err(e) = run_wave(&http, &server.base_url, &info.model_id, &all, &warm).await
    {
        llama_unavailable = Some(format!("llama.cpp's server failed in the warm-up: {e}"));
        llama = None;
    }

    let top = levels.iter().copied().max().unwrap_or(1);
    let (audit_fill, audit_fill_skipped) = if args.cold {
        (None, Some("`--cold`".to_string()))
    } else {
        match fill_audit_store(&http, &forge.base_url, &forge_model, top, &prompts, &shape)
            .await
            .map_err(|e| forge_failed(&forge, "filling the audit store", &e))?
        {
            Ok(fill) => (Some(fill), None),
            Err(why) => (None, Some(why)),
        }
    };

    let mut raw: Vec<LevelRun> = Vec::new();
    for r in 0..runs {
        for (li, &c) in levels.iter().enumerate() {
            // Alternate which server goes first so drift favours neither.
            let order = if (r + li) % 2 == 0 {
                [Server::Forge, Server::LlamaCpp]
            } else {
                [Server::LlamaCpp, Server::Forge]
            };
            for server in order {
                match server {
                    Server::Forge => {
                        let lr = run_level(
                            &http,
                            &forge.base_url,
                            &forge_model,
                            server,
                            c,
                            r,
                            &prompts,
                            &shape,
                        )
                        .await
                        .map_err(|e| {
                            forge_failed(&forge, &format!("{c} stream(s), run {}", r + 1), &e)
                        })?;
                        log_level(&lr);
                        raw.push(lr);
                    }
                    Server::LlamaCpp => {
                        let Some((ls, info)) = &llama else { continue };
                        match run_level(
                            &http,
                            &ls.base_url,
                            &info.model_id,
                            server,
                            c,
                            r,
                            &prompts,
                            &shape,
                        )
                        .await
                        {
                            Ok(lr) => {
                                log_level(&lr);
                                raw.push(lr);
                            }
                            Err(e) => {
                                // A failure midway drops its results (no
                                // partial ratios), as `decode` does.
                                tracing::warn!(error = %e, "llama.cpp's server failed");
                                llama_unavailable = Some(format!(
                                    "llama.cpp's server failed during the benchmark ({c} stream(s), run {}): {e}{}",
                                    r + 1,
                                    ls.stderr_tail()
                                ));
                                llama = None;
                                raw.retain(|x| x.server != Server::LlamaCpp);
                            }
                        }
                    }
                }
            }
        }
    }
    drop(forge);
    let llama_info = llama.map(|(server, info)| {
        drop(server);
        info
    });

    let rows = table_rows(&raw, &levels, max_tokens);
    let targets = targets(&rows, &levels);
    let prompt_tokens = prompts
        .iter()
        .map(|p| {
            let count = |s: Server| {
                raw.iter()
                    .filter(|x| x.server == s)
                    .flat_map(LevelRun::streams)
                    .find(|st| st.prompt == p.name)
                    .and_then(|st| st.trace.usage)
                    .map(|u| u.prompt_tokens)
            };
            (
                p.name.to_string(),
                count(Server::Forge),
                count(Server::LlamaCpp),
            )
        })
        .collect();
    let report = ServeReport {
        command: util::command_line(),
        date: util::utc_now(),
        cpu: util::cpu_model(),
        load_average: (load_start, util::load_average()),
        model: path.display().to_string(),
        threads,
        max_tokens,
        temperature: args.temperature,
        runs,
        concurrency: levels,
        banned_tokens: banned,
        prompts: prompts.iter().map(|p| p.name.to_string()).collect(),
        prompt_tokens,
        forge: forge_info,
        audit_fill,
        audit_fill_skipped,
        llama_cpp: llama_info,
        llama_cpp_unavailable: llama_unavailable,
        llama_env: args.llama_env.clone(),
        rows,
        targets,
        raw,
        wall_secs: started.elapsed().as_secs_f64(),
        note: args.note.clone(),
    };
    let md = render_markdown(&report);
    print!("{md}");
    crate::util::write_results(&args.out, &md, &report)?;
    Ok(report)
}

/// The levels, deduplicated, in the order given.
fn levels(arg: &[NonZeroUsize]) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for c in arg.iter().map(|c| c.get()) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        bail!("--concurrency needs at least one level");
    }
    Ok(out)
}

/// The prompts named in `names` (all when empty), in the set's order.
fn select_prompts(all: Vec<BenchPrompt>, names: &[String]) -> Result<Vec<BenchPrompt>> {
    if names.is_empty() {
        return Ok(all);
    }
    if let Some(bad) = names
        .iter()
        .find(|n| !all.iter().any(|p| p.name == n.as_str()))
    {
        bail!(
            "--prompts: no prompt named `{bad}` (there are: {})",
            all.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|p| names.iter().any(|n| n == p.name))
        .collect())
}

/// The model's end-of-generation tokens (EOS, `<|im_end|>`,
/// `<|endoftext|>`), as forge-engine's tokenizer reads them from the GGUF.
fn stop_tokens(path: &Path) -> Result<Vec<u32>> {
    let file = forge_engine::gguf::GgufFile::open(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let tok = forge_engine::Tokenizer::from_gguf(&file)
        .with_context(|| format!("cannot read the tokenizer of {}", path.display()))?;
    Ok(tok.stop_ids().to_vec())
}

async fn start_llama(
    http: &reqwest::Client,
    python: &Path,
    model: &Path,
    threads: usize,
    startup_timeout: Duration,
    env: &[(String, String)],
) -> Result<(ServerProcess, LlamaInfo), String> {
    // A quick import first, so that a missing package is named plainly
    // rather than found in a traceback.
    let check = command_output(
        python,
        &[
            "-c",
            "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)",
        ],
    );
    let version = match check {
        Ok((true, out, _)) => Some(out.trim().to_string()),
        Ok((false, _, err)) => {
            let last = err.trim().lines().last().unwrap_or("").to_string();
            return Err(format!(
                "`import llama_cpp.server.app` failed ({last}): llama-cpp-python with its server extra is needed"
            ));
        }
        Err(e) => return Err(format!("cannot run {}: {e}", python.display())),
    };
    let cfg = LlamaServerConfig {
        python,
        model,
        threads,
        n_ctx: LLAMA_N_CTX,
        env,
        startup_timeout,
    };
    let (server, args) = ServerProcess::start_llama(http, &cfg).await?;
    let model_id = first_model_id(http, &server.base_url).await?;
    let info = LlamaInfo {
        python: python.display().to_string(),
        version,
        args,
        model_id,
        ready_secs: server.ready_secs,
    };
    Ok((server, info))
}

/// Run `program args` to completion: (success, stdout, stderr). Blocking,
/// but only for the moment a Python import takes, before any measurement.
fn command_output(program: &Path, args: &[&str]) -> std::io::Result<(bool, String, String)> {
    let out = std::process::Command::new(program).args(args).output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn forge_failed(forge: &ServerProcess, when: &str, e: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "forge-node serve failed during {when}: {e}{}",
        forge.stderr_tail()
    )
}

/// One level on one server: `ceil(prompts / c)` waves of `c` streams,
/// stream `s` of wave `w` taking prompt `(w·c + s) mod prompts`.
#[allow(clippy::too_many_arguments)]
async fn run_level(
    http: &reqwest::Client,
    base_url: &str,
    model: &str,
    server: Server,
    c: usize,
    run: usize,
    prompts: &[BenchPrompt],
    shape: &RequestShape,
) -> Result<LevelRun, String> {
    let waves = prompts.len().div_ceil(c);
    let before = match server {
        Server::Forge => scrape(http, base_url).await,
        Server::LlamaCpp => None,
    };
    let mut out = Vec::with_capacity(waves);
    for w in 0..waves {
        let picked = wave_prompts(prompts, c, w);
        out.push(run_wave(http, base_url, model, &picked, shape).await?);
    }
    let engine = match before {
        Some(b) => scrape(http, base_url).await.map(|a| a.since(&b)),
        None => None,
    };
    Ok(LevelRun {
        server,
        concurrency: c,
        run,
        waves: out,
        engine,
    })
}

/// The prompts of wave `w` of `c` streams: stream s takes prompt
/// `(w * c + s) mod len`, so that every prompt is sent in turn.
fn wave_prompts(prompts: &[BenchPrompt], c: usize, w: usize) -> Vec<&BenchPrompt> {
    (0..c)
        .map(|s| &prompts[(w * c + s) % prompts.len()])
        .collect()
}

/// Sends waves of `c` streams (prompts in turn, as the levels take them)
/// until Forge's audit store has dropped a commitment, then one more, so
/// that what is measured next reuses the dropped commitments' memory.
/// Outer error: a request failed; inner: why the store cannot be filled.
async fn fill_audit_store(
    http: &reqwest::Client,
    base_url: &str,
    model: &str,
    c: usize,
    prompts: &[BenchPrompt],
    shape: &RequestShape,
) -> Result<Result<AuditFill, String>, String> {
    let Some(mut store) = scrape_audit(http, base_url).await else {
        return Ok(Err("its /metrics did not answer".into()));
    };
    match store.limit_bytes {
        None => return Ok(Err("it publishes no audit bound".into())),
        Some(l) if l <= 0.0 => return Ok(Err("it keeps no commitments".into())),
        Some(_) => {}
    }
    let started = Instant::now();
    let (mut waves, mut reached_bound) = (0, false);
    tracing::info!(streams = c, "filling the audit store");
    while waves < MAX_FILL_WAVES {
        let picked = wave_prompts(prompts, c, waves);
        run_wave(http, base_url, model, &picked, shape).await?;
        waves += 1;
        if reached_bound {
            break;
        }
        let Some(after) = scrape_audit(http, base_url).await else {
            return Ok(Err("its /metrics stopped answering".into()));
        };
        reached_bound = after.dropped_since(&store, c);
        store = after;
    }
    let store = scrape_audit(http, base_url).await.unwrap_or(store);
    let fill = AuditFill {
        waves,
        streams: c,
        secs: started.elapsed().as_secs_f64(),
        store,
        reached_bound,
    };
    tracing::info!(
        waves,
        secs = fill.secs,
        mib = store.bytes / f64::from(1 << 20),
        reached_bound,
        "audit store filled"
    );
    Ok(Ok(fill))
}

/// Send one stream per prompt at once; wait for all.
async fn run_wave(
    http: &reqwest::Client,
    base_url: &str,
    model: &str,
    prompts: &[&BenchPrompt],
    shape: &RequestShape,
) -> Result<Wave, String> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, p) in prompts.iter().enumerate() {
        let body = chat_body(model, &p.user, shape);
        let (http, base_url) = (http.clone(), base_url.to_string());
        set.spawn(async move {
            let sent_at = start.elapsed().as_secs_f64();
            (i, sent_at, stream_chat(&http, &base_url, &body).await)
        });
    }
    let mut streams: Vec<Option<StreamRecord>> = vec![None; prompts.len()];
    while let Some(joined) = set.join_next().await {
        let (i, sent_at, result) = joined.map_err(|e| format!("a client task failed: {e}"))?;
        let name = prompts[i].name;
        let trace = result.map_err(|e| format!("stream {i} (`{name}`): {e}"))?;
        if let Some(problem) = trace.problem() {
            return Err(format!("stream {i} (`{name}`): {problem}"));
        }
        let (tokens, tokens_from) = trace.completion_tokens(shape.max_tokens);
        streams[i] = Some(StreamRecord {
            prompt: name.to_string(),
            sent_at,
            tokens,
            tokens_from,
            trace,
        });
    }
    let wall_secs = start.elapsed().as_secs_f64();
    Ok(Wave {
        wall_secs,
        streams: streams.into_iter().flatten().collect(),
    })
}

fn log_level(lr: &LevelRun) {
    let ttft: Vec<f64> = lr.streams().filter_map(StreamRecord::ttft).collect();
    tracing::info!(
        server = lr.server.label(),
        streams = lr.concurrency,
        run = lr.run + 1,
        aggregate_tps = format!("{:.1}", lr.aggregate_tps().unwrap_or(0.0)),
        ttft_ms = format!("{:.0}", 1e3 * median(&ttft).unwrap_or(0.0)),
        "level done"
    );
}

/// The most intervals `[start, end]` that contain one instant.
pub fn max_overlap(intervals: &[(f64, f64)]) -> usize {
    let mut points: Vec<(f64, i32)> = Vec::with_capacity(2 * intervals.len());
    for &(a, b) in intervals {
        points.push((a, 1));
        points.push((b, -1));
    }
    // At equal times, starts before ends: touching intervals overlap.
    points.sort_by(|x, y| x.0.total_cmp(&y.0).then(y.1.cmp(&x.1)));
    let (mut cur, mut best) = (0i32, 0i32);
    for (_, d) in points {
        cur += d;
        best = best.max(cur);
    }
    best as usize
}

/// One row per level and server (Forge first), from the raw runs.
pub fn table_rows(raw: &[LevelRun], levels: &[usize], max_tokens: usize) -> Vec<LevelRow> {
    let mut rows = Vec::new();
    for &c in levels {
        for server in [Server::Forge, Server::LlamaCpp] {
            let runs: Vec<&LevelRun> = raw
                .iter()
                .filter(|r| r.server == server && r.concurrency == c)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let streams: Vec<&StreamRecord> = runs.iter().flat_map(|r| r.streams()).collect();
            let ttft: Vec<f64> = streams.iter().filter_map(|s| s.ttft()).collect();
            let dec: Vec<f64> = streams.iter().filter_map(|s| s.decode_tps()).collect();
            let agg: Vec<f64> = runs.iter().filter_map(|r| r.aggregate_tps()).collect();
            let toks: Vec<f64> = streams.iter().map(|s| s.tokens() as f64).collect();
            let overlap = runs
                .iter()
                .flat_map(|r| r.waves.iter())
                .map(|w| {
                    let iv: Vec<(f64, f64)> = w
                        .streams
                        .iter()
                        .filter_map(|s| {
                            Some((
                                s.sent_at + s.trace.first_content?,
                                s.sent_at + s.trace.last_content?,
                            ))
                        })
                        .collect();
                    max_overlap(&iv)
                })
                .max()
                .unwrap_or(0);
            let engine = runs
                .iter()
                .map(|r| r.engine)
                .try_fold(EngineCounters::default(), |acc, e| e.map(|e| acc.plus(&e)));
            let wall: f64 = runs.iter().map(|r| r.wall_secs()).sum();
            rows.push(LevelRow {
                server,
                concurrency: c,
                requests: streams.len(),
                ttft_ms: median(&ttft).map(|v| v * 1e3),
                ttft_ms_max: ttft.iter().copied().reduce(f64::max).map(|v| v * 1e3),
                decode_tps: median(&dec),
                aggregate_tps: median(&agg),
                scaling_vs_1: None,
                forge_over_llama: None,
                tokens_per_stream: median(&toks),
                short_streams: streams.iter().filter(|s| s.tokens() < max_tokens).count(),
                receipts: streams
                    .iter()
                    .filter(|s| s.trace.receipt_id.is_some())
                    .count(),
                max_decoding_at_once: overlap,
                engine_mean_batch: engine.and_then(|e| e.mean_batch()),
                engine_step_ms: engine.and_then(|e| e.mean_step_ms()),
                engine_busy: engine.filter(|_| wall > 0.0).map(|e| e.step_secs / wall),
            });
        }
    }
    // Ratios, once every row's aggregate is known.
    let agg = |rows: &[LevelRow], s: Server, c: usize| {
        rows.iter()
            .find(|r| r.server == s && r.concurrency == c)
            .and_then(|r| r.aggregate_tps)
    };
    let snapshot = rows.clone();
    for row in &mut rows {
        row.scaling_vs_1 = ratio(row.aggregate_tps, agg(&snapshot, row.server, 1));
        if row.server == Server::Forge {
            row.forge_over_llama = ratio(
                row.aggregate_tps,
                agg(&snapshot, Server::LlamaCpp, row.concurrency),
            );
        }
    }
    rows
}

/// The requirement's two targets, at the largest level run (they are set
/// for 8 streams; other levels are reported without a verdict).
pub fn targets(rows: &[LevelRow], levels: &[usize]) -> Targets {
    let top = levels.iter().copied().filter(|&c| c > 1).max();
    let get =
        |s: Server| top.and_then(|c| rows.iter().find(|r| r.server == s && r.concurrency == c));
    let forge = get(Server::Forge);
    let llama = get(Server::LlamaCpp);
    let forge_scaling = forge.and_then(|r| r.scaling_vs_1);
    let forge_over_llama = forge.and_then(|r| r.forge_over_llama);
    let at8 = top == Some(8);
    Targets {
        top_level: top,
        forge_scaling,
        llama_scaling: llama.and_then(|r| r.scaling_vs_1),
        forge_over_llama,
        scaling_met: forge_scaling.filter(|_| at8).map(|x| x >= 3.0),
        ahead_met: forge_over_llama.filter(|_| at8).map(|x| x > 1.0),
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".into(), f)
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "no verdict",
    }
}

/// The report as Markdown: the table, the targets, then how it was measured.
pub fn render_markdown(r: &ServeReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Serving benchmark: forge-node serve vs llama.cpp's server\n"
    );
    let model = Path::new(&r.model)
        .file_name()
        .map_or(r.model.clone(), |f| f.to_string_lossy().into_owned());
    let _ = writeln!(
        s,
        "Model `{model}` served by both; {} compute thread(s) each; streamed chat completions, greedy, \
         max_tokens {}{}; concurrency levels {}; {} run(s) per level. {}\n",
        r.threads,
        r.max_tokens,
        if r.banned_tokens.is_empty() {
            " (generation may stop early at the end-of-turn token)".to_string()
        } else {
            format!(
                " (every stream generates exactly {} tokens: the end-of-turn tokens {:?} get logit_bias -100)",
                r.max_tokens, r.banned_tokens
            )
        },
        r.concurrency
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        r.runs,
        r.date
    );
    if let Some(why) = &r.llama_cpp_unavailable {
        let _ = writeln!(
            s,
            "**llama.cpp's server: not available** ({why}); only Forge's rows are given, with no ratios to it.\n"
        );
    }
    let _ = writeln!(
        s,
        "| streams | server | TTFT median (ms) | TTFT max (ms) | decode tok/s per stream | aggregate tok/s \
         | aggregate vs 1 stream | forge / llama.cpp (aggregate) | streams decoding at once (max) | receipts |"
    );
    let _ = writeln!(s, "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for x in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            x.concurrency,
            x.server.label(),
            opt(x.ttft_ms, |v| format!("{v:.0}")),
            opt(x.ttft_ms_max, |v| format!("{v:.0}")),
            opt(x.decode_tps, |v| format!("{v:.1}")),
            opt(x.aggregate_tps, |v| format!("{v:.1}")),
            opt(x.scaling_vs_1, |v| format!("{v:.2}x")),
            if x.server == Server::Forge {
                opt(x.forge_over_llama, |v| format!("{v:.2}x"))
            } else {
                String::new()
            },
            x.max_decoding_at_once,
            x.receipts,
            x.requests,
        );
    }
    let _ = writeln!(s);
    if r.rows.iter().any(|x| x.engine_mean_batch.is_some()) {
        let _ = writeln!(
            s,
            "Forge's engine during those runs (its `/metrics`, read before and after each run):\n"
        );
        let _ = writeln!(
            s,
            "| streams | sequences per engine step (mean) | ms per engine step (mean) | engine busy (step time / wall) |"
        );
        let _ = writeln!(s, "|--:|--:|--:|--:|");
        for x in r.rows.iter().filter(|x| x.server == Server::Forge) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                x.concurrency,
                opt(x.engine_mean_batch, |v| format!("{v:.2}")),
                opt(x.engine_step_ms, |v| format!("{v:.1}")),
                opt(x.engine_busy, |v| format!("{:.0}%", 100.0 * v)),
            );
        }
        let _ = writeln!(s);
    }
    let t = &r.targets;
    if let Some(top) = t.top_level {
        let _ = writeln!(s, "Targets (set for 8 streams):\n");
        let _ = writeln!(
            s,
            "- Forge's aggregate at {top} streams / at 1 stream: {} (target >= 3x: {}); llama.cpp's server: {}.",
            opt(t.forge_scaling, |v| format!("{v:.2}x")),
            verdict(t.scaling_met),
            opt(t.llama_scaling, |v| format!("{v:.2}x")),
        );
        let _ = writeln!(
            s,
            "- Forge / llama.cpp's server, aggregate at {top} streams: {} (target > 1x: {}).\n",
            opt(t.forge_over_llama, |v| format!("{v:.2}x")),
            verdict(t.ahead_met),
        );
    }
    let _ = writeln!(s, "Notes:\n");
    let _ = writeln!(
        s,
        "- Client: one thread, plain HTTP/1.1 on loopback; each stream is `POST /v1/chat/completions` with the system \
         message \"{}\" and one prompt of `forge-bench decode`'s set ({}), `stream: true`, \
         `stream_options.include_usage`, temperature {}, seed 0. A wave sends C streams at once and waits for all; \
         a run of level C is ceil({}/C) waves, stream s of wave w taking prompt (w*C+s) mod {}, so every prompt \
         is sent at every level (in equal shares when C divides the number of prompts or is a multiple of it).",
        crate::prompts::SYSTEM,
        r.prompts
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", "),
        r.temperature,
        r.prompts.len(),
        r.prompts.len()
    );
    let _ = writeln!(
        s,
        "- TTFT: from just before the request is sent to the first non-empty content delta (connection, queueing, \
         prefill, first token). Decode tok/s per stream: (tokens - 1) / (last content delta - first content delta). \
         Aggregate tok/s: completion tokens (the server's usage) of all streams of a run over the summed wall time of \
         its waves, first send to the last `[DONE]`. TTFT and decode: medians over all streams of all runs; aggregate: \
         median over runs. Streams decoding at once: the most streams whose first-to-last-delta intervals overlap at one \
         instant in a wave."
    );
    let _ = writeln!(
        s,
        "- forge-node serve: `--threads {} --max-concurrent {}`, a fresh temporary ledger, no API key, RUST_LOG=warn; \
         continuous batching on one engine thread (new requests join between steps; each step forwards every running \
         sequence together, plus the prompts of new ones within a per-step budget of prompt tokens, at least one: see \
         `PREFILL_TOKENS_PER_STEP` in api/src/scheduler/engine.rs). It always commits to every layer's activations and signs a receipt with a Groth16 CU \
         proof per request, off the engine thread; a stream's finish chunk (and `[DONE]`) waits for its receipt, so \
         the aggregate includes that. The receipts column counts the streams whose finish chunk carried a receipt id.",
        r.threads, r.forge.max_concurrent
    );
    let mib = |b: f64| b / f64::from(1 << 20);
    match (&r.audit_fill, &r.audit_fill_skipped) {
        (Some(f), _) => {
            let _ = writeln!(
                s,
                "- Audit store: before measuring, {} wave(s) of {} streams ({} requests, {:.1} s) filled forge-node's \
                 store of commitments kept for auditors (`--audit-retain-mib`) {}: {:.0} of {:.0} MiB held. A server \
                 that has run a while is in this state: a new commitment takes the memory of the oldest it drops, \
                 where until the bound every committed row (about 92 KB per position of SmolLM2) takes memory the \
                 process never had, page by page. `--cold` measures a freshly started server.",
                f.waves,
                f.streams,
                f.waves * f.streams,
                f.secs,
                if f.reached_bound {
                    "until it dropped its oldest"
                } else {
                    "(the wave cap came before the bound)"
                },
                mib(f.store.bytes),
                f.store.limit_bytes.map_or(0.0, mib),
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(
                s,
                "- Audit store: not filled before measuring ({why}); a freshly started server's commitments take \
                 memory the process never had until its store reaches the bound."
            );
        }
        (None, None) => {}
    }
    if let Some(l) = &r.llama_cpp {
        let _ = writeln!(
            s,
            "- llama.cpp: llama-cpp-python {} ({}), `python {}`{}. Its server holds one `Llama` object (one context, \
             one sequence) behind a lock and generates for one request at a time; it has no option for parallel \
             sequences. Concurrent streams queue for the lock; by default (`interrupt_requests`) a waiting request \
             would end the running stream early, hence `--interrupt_requests False`. It reuses the KV cache of the \
             previous request's longest common prefix (here the system message: every request's prompt differs \
             from the one before it). It ignores `stream_options` (its streams carry no usage) and applies \
             `logit_bias` in Python on each token's logits. It sends no receipts.",
            l.version.as_deref().unwrap_or("?"),
            l.python,
            l.args.join(" "),
            if r.llama_env.is_empty() {
                String::new()
            } else {
                format!(
                    ", environment {}",
                    r.llama_env
                        .iter()
                        .map(|(k, v)| format!("`{k}={v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    let tok = |v: Option<usize>| v.map_or("n/a".into(), |v| v.to_string());
    let _ = writeln!(
        s,
        "- Prompt tokens (forge / llama.cpp, from their usage): {}.",
        r.prompt_tokens
            .iter()
            .map(|(n, a, b)| format!("{n} {} / {}", tok(*a), tok(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for server in [Server::Forge, Server::LlamaCpp] {
        let mut counts = [
            (TokenCount::Usage, 0usize),
            (TokenCount::Length, 0),
            (TokenCount::Deltas, 0),
        ];
        for st in r
            .raw
            .iter()
            .filter(|x| x.server == server)
            .flat_map(LevelRun::streams)
        {
            if let Some(c) = counts.iter_mut().find(|c| c.0 == st.tokens_from) {
                c.1 += 1;
            }
        }
        let parts: Vec<String> = counts
            .iter()
            .filter(|c| c.1 > 0)
            .map(|(k, n)| {
                let how = match k {
                    TokenCount::Usage => "from the stream's usage",
                    TokenCount::Length => {
                        "max_tokens, the stream having no usage and finish_reason `length`"
                    }
                    TokenCount::Deltas => "counted content deltas (no usage)",
                };
                format!("{n} stream(s) {how}")
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "- Completion tokens, {}: {}.",
                server.label(),
                parts.join("; ")
            );
        }
    }
    let short: usize = r.rows.iter().map(|x| x.short_streams).sum();
    if short > 0 {
        let _ = writeln!(s, "- {short} stream(s) ended before max_tokens.");
    }
    let _ = writeln!(
        s,
        "- The servers take turns level by level (the first alternates), each idle while the other is measured. \
         Startup to ready: forge {:.1} s{}.",
        r.forge.ready_secs,
        r.llama_cpp.as_ref().map_or(String::new(), |l| format!(
            ", llama.cpp {:.1} s",
            l.ready_secs
        ))
    );
    let _ = writeln!(
        s,
        "- CPU: {}; 1-min load average {} before, {} after.",
        r.cpu.as_deref().unwrap_or("unknown"),
        opt(r.load_average.0, |v| format!("{v:.2}")),
        opt(r.load_average.1, |v| format!("{v:.2}"))
    );
    if let Some(note) = &r.note {
        let _ = writeln!(s, "- {note}");
    }
    let _ = writeln!(
        s,
        "- Date: {}. Wall time of the command: {:.1} s.",
        r.date, r.wall_secs
    );
    let _ = writeln!(s, "- Command: `{}`", r.command);
    s
}

#[cfg(test)]
mod tests {
    use super::sse::{StreamTrace, Usage};
    use super::*;

    fn stream(
        prompt: &str,
        sent_at: f64,
        first: f64,
        last: f64,
        tokens: usize,
        receipt: bool,
    ) -> StreamRecord {
        StreamRecord {
            prompt: prompt.into(),
            sent_at,
            tokens,
            tokens_from: TokenCount::Usage,
            trace: StreamTrace {
                first_content: Some(first),
                last_content: Some(last),
                content_deltas: tokens,
                content_bytes: tokens * 3,
                finish_reason: Some("length".into()),
                usage: Some(Usage {
                    prompt_tokens: 10,
                    completion_tokens: tokens,
                }),
                receipt_id: receipt.then(|| "r".into()),
                done: Some(last + 0.01),
                error: None,
            },
        }
    }

    fn level(server: Server, c: usize, run: usize, waves: Vec<Wave>) -> LevelRun {
        let engine = (server == Server::Forge).then_some(EngineCounters {
            steps: 10.0,
            sequences: 10.0 * c as f64,
            step_secs: 0.5,
            completion_tokens: 0.0,
            receipts: 0.0,
        });
        LevelRun {
            server,
            concurrency: c,
            run,
            waves,
            engine,
        }
    }

    #[test]
    fn overlap_counts_concurrent_intervals() {
        assert_eq!(max_overlap(&[]), 0);
        assert_eq!(
            max_overlap(&[(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]),
            2,
            "touching counts"
        );
        assert_eq!(max_overlap(&[(0.0, 1.0), (1.5, 2.0), (2.5, 3.0)]), 1);
        assert_eq!(
            max_overlap(&[(0.0, 5.0), (1.0, 2.0), (1.5, 3.0), (4.0, 6.0)]),
            3
        );
    }

    #[test]
    fn rows_medians_and_ratios() {
        // Forge: 1 stream, 10 tokens in 1 s per run; 2 streams, 20 tokens in 1 s.
        // llama.cpp: 1 stream 10 tokens in 2 s; 2 streams serialized, 20 tokens in 4 s.
        let one = |s, wall, first, last| Wave {
            wall_secs: wall,
            streams: vec![stream("a", 0.0, first, last, 10, s == Server::Forge)],
        };
        let raw = vec![
            level(Server::Forge, 1, 0, vec![one(Server::Forge, 1.0, 0.1, 1.0)]),
            level(Server::Forge, 1, 1, vec![one(Server::Forge, 2.0, 0.3, 1.2)]),
            level(
                Server::LlamaCpp,
                1,
                0,
                vec![one(Server::LlamaCpp, 2.0, 0.2, 1.9)],
            ),
            level(
                Server::Forge,
                2,
                0,
                vec![Wave {
                    wall_secs: 1.0,
                    streams: vec![
                        stream("a", 0.0, 0.1, 0.9, 10, true),
                        stream("b", 0.0, 0.2, 0.95, 10, true),
                    ],
                }],
            ),
            level(
                Server::LlamaCpp,
                2,
                0,
                vec![Wave {
                    wall_secs: 4.0,
                    streams: vec![
                        stream("a", 0.0, 0.2, 1.9, 10, false),
                        stream("b", 0.0, 2.2, 3.9, 10, false),
                    ],
                }],
            ),
        ];
        let rows = table_rows(&raw, &[1, 2], 10);
        assert_eq!(rows.len(), 4);
        let f1 = &rows[0];
        assert_eq!(
            (f1.server, f1.concurrency, f1.requests),
            (Server::Forge, 1, 2)
        );
        // Aggregates 10/1 and 10/2 -> median 7.5; TTFT 100 and 300 ms -> 200.
        assert_eq!(f1.aggregate_tps, Some(7.5));
        assert!((f1.ttft_ms.unwrap() - 200.0).abs() < 1e-9);
        assert!((f1.ttft_ms_max.unwrap() - 300.0).abs() < 1e-9);
        assert_eq!(
            (f1.receipts, f1.short_streams, f1.max_decoding_at_once),
            (2, 0, 1)
        );
        assert_eq!(f1.scaling_vs_1, Some(1.0));
        assert_eq!(f1.forge_over_llama, Some(1.5));
        // Engine counters summed over both runs: 20 steps of 1, 1 s in steps over 3 s of waves.
        assert_eq!(
            (f1.engine_mean_batch, f1.engine_step_ms),
            (Some(1.0), Some(50.0))
        );
        assert!((f1.engine_busy.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        let f2 = &rows[2];
        assert_eq!((f2.server, f2.aggregate_tps), (Server::Forge, Some(20.0)));
        assert_eq!(f2.scaling_vs_1, Some(20.0 / 7.5));
        assert_eq!(f2.forge_over_llama, Some(4.0));
        assert_eq!(f2.max_decoding_at_once, 2);
        let l2 = &rows[3];
        assert_eq!(
            (l2.server, l2.aggregate_tps, l2.scaling_vs_1),
            (Server::LlamaCpp, Some(5.0), Some(1.0))
        );
        assert_eq!(
            (l2.max_decoding_at_once, l2.receipts, l2.forge_over_llama),
            (1, 0, None)
        );
        assert_eq!((l2.engine_mean_batch, l2.engine_busy), (None, None));
        assert_eq!(f2.engine_mean_batch, Some(2.0));
        // Per-stream decode: 9 tokens over 0.75 s and 0.8 s... median of the two.
        let want = (9.0 / 0.8 + 9.0 / 0.75) / 2.0;
        assert!((f2.decode_tps.unwrap() - want).abs() < 1e-9);

        let t = targets(&rows, &[1, 2]);
        assert_eq!(t.top_level, Some(2));
        assert_eq!(
            (t.forge_scaling, t.forge_over_llama),
            (Some(20.0 / 7.5), Some(4.0))
        );
        // The targets are set for 8 streams: no verdict at 2.
        assert_eq!((t.scaling_met, t.ahead_met), (None, None));
    }

    #[test]
    fn verdicts_at_eight_streams_and_without_llama_cpp() {
        let wave = |wall: f64, n: usize| Wave {
            wall_secs: wall,
            streams: (0..n)
                .map(|_| stream("p", 0.0, 0.1, 0.9, 10, true))
                .collect(),
        };
        let raw = vec![
            level(Server::Forge, 1, 0, vec![wave(1.0, 1)]),
            level(Server::Forge, 8, 0, vec![wave(4.0, 8)]),
        ];
        let rows = table_rows(&raw, &[1, 8], 16);
        assert_eq!(rows.len(), 2, "no llama.cpp rows");
        assert_eq!(rows[1].short_streams, 8, "10 < 16 tokens");
        let t = targets(&rows, &[1, 8]);
        assert_eq!(t.forge_scaling, Some(2.0));
        assert_eq!(
            (t.scaling_met, t.ahead_met, t.forge_over_llama),
            (Some(false), None, None)
        );
        let raw = vec![
            level(Server::Forge, 1, 0, vec![wave(1.0, 1)]),
            level(Server::Forge, 8, 0, vec![wave(2.0, 8)]),
            level(Server::LlamaCpp, 8, 0, vec![wave(8.0, 8)]),
        ];
        let t = targets(&table_rows(&raw, &[1, 8], 10), &[1, 8]);
        assert_eq!((t.scaling_met, t.ahead_met), (Some(true), Some(true)));
    }

    #[test]
    fn prompts_are_selected_by_name() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = select_prompts(prompt_set(), &[]).unwrap();
        assert_eq!(all.len(), prompt_set().len());
        let two = select_prompts(prompt_set(), &names(&["explain", "short"])).unwrap();
        assert_eq!(
            two.iter().map(|p| p.name).collect::<Vec<_>>(),
            ["short", "explain"]
        );
        let err = select_prompts(prompt_set(), &names(&["nope"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`nope`") && err.contains("prefill-500"),
            "{err}"
        );
    }

    #[test]
    fn levels_are_deduplicated_in_order() {
        let n = |v: usize| NonZeroUsize::new(v).unwrap();
        assert_eq!(levels(&[n(8), n(1), n(8), n(4)]).unwrap(), vec![8, 1, 4]);
        assert!(levels(&[]).is_err());
    }
}
