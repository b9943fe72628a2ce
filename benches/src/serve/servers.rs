//! The two servers under test, each a child process on a loopback port:
//! `forge-node serve` and llama-cpp-python's `python -m llama_cpp.server`.
//! Both are stopped when dropped.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How much of a child's stderr is kept for error messages.
const STDERR_KEEP: usize = 16 * 1024;
/// Pause between readiness probes.
const POLL: Duration = Duration::from_millis(100);

/// A server child process and where it listens.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Seconds from spawning to the first ready answer.
    pub ready_secs: f64,
    stderr: Arc<Mutex<String>>,
    what: &'static str,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("what", &self.what)
            .field("pid", &self.child.id())
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Settings of the Forge server.
#[derive(Clone, Debug)]
pub struct ForgeConfig<'a> {
    /// The `forge-node` binary.
    pub binary: &'a Path,
    /// The GGUF.
    pub model: &'a Path,
    /// Rayon threads (`--threads`).
    pub threads: usize,
    /// `--max-concurrent`.
    pub max_concurrent: usize,
    /// The ledger file (a temporary one: the benchmark must not write into
    /// the user's ledger, and an empty ledger needs no API key).
    pub ledger: &'a Path,
    /// How long to wait for `/health` to answer 200.
    pub startup_timeout: Duration,
}

/// Settings of llama-cpp-python's server.
#[derive(Clone, Debug)]
pub struct LlamaServerConfig<'a> {
    /// A Python with `llama-cpp-python[server]`.
    pub python: &'a Path,
    /// The GGUF.
    pub model: &'a Path,
    /// `--n_threads` and `--n_threads_batch`.
    pub threads: usize,
    /// `--n_ctx`.
    pub n_ctx: usize,
    /// Extra environment (e.g. `OMP_WAIT_POLICY=PASSIVE`).
    pub env: &'a [(String, String)],
    /// How long to wait for `/v1/models` to answer 200.
    pub startup_timeout: Duration,
}

impl ServerProcess {
    /// Start `forge-node serve` on a free loopback port (`--listen
    /// 127.0.0.1:0`; the node prints the address it bound) and wait until
    /// `/health` answers 200, i.e. the model is loaded. Errors say why it
    /// could not start, with the tail of its stderr.
    pub async fn start_forge(http: &reqwest::Client, cfg: &ForgeConfig<'_>) -> Result<Self> {
        if !cfg.binary.is_file() {
            bail!(
                "forge-node not found at {}: build it with `cargo build --release -p forge-node`, or pass --forge-node PATH",
                cfg.binary.display()
            );
        }
        let mut cmd = Command::new(cfg.binary);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--model")
            .arg(cfg.model)
            .args(["--threads", &cfg.threads.to_string()])
            .args(["--max-concurrent", &cfg.max_concurrent.to_string()])
            .arg("--ledger")
            .arg(cfg.ledger)
            // Logging every request would cost the server time the
            // benchmark attributes to serving.
            .env("RUST_LOG", "warn");
        // Settings from the caller's environment (FORGE_API_KEYS,
        // FORGE_CONFIG, ...) would change what is measured or demand an API
        // key; FORGE_HOME stays (the node key lives there).
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str()
                && k.starts_with("FORGE_")
                && k != "FORGE_HOME"
            {
                cmd.env_remove(k);
            }
        }
        tracing::info!(binary = %cfg.binary.display(), "starting forge-node serve");
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", cfg.binary.display()))?;
        let stderr = drain_stderr(&mut child);
        let lines = read_lines(&mut child);
        let mut server = Self {
            child,
            base_url: String::new(),
            ready_secs: 0.0,
            stderr,
            what: "forge-node serve",
        };
        // The address comes first, on stdout, as soon as the port is bound.
        let addr = loop {
            match lines.try_recv() {
                Ok(line) => {
                    if let Some(addr) = parse_listening(&line) {
                        break addr;
                    }
                }
                Err(TryRecvError::Disconnected) => {
                    return Err(server.died("before printing its address").await);
                }
                Err(TryRecvError::Empty) => {}
            }
            if let Some(e) = server.exited().await {
                return Err(e);
            }
            if started.elapsed() > cfg.startup_timeout {
                bail!(
                    "forge-node serve printed no `listening on` line within {:?}{}",
                    cfg.startup_timeout,
                    server.stderr_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        server.base_url = format!("http://{addr}");
        server
            .wait_ready(http, "/health", cfg.startup_timeout, started)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(server)
    }

    /// Start `python -m llama_cpp.server` on a free loopback port and wait
    /// until `/v1/models` answers 200. `Err` is the reason the reference is
    /// unavailable (no interpreter, no llama_cpp, no server extras, a crash).
    ///
    /// `--interrupt_requests False`: by default the server ends the stream
    /// it is generating as soon as another request waits for the model (it
    /// serves one request at a time), which would cut every concurrent
    /// stream short; with it off, waiting requests queue instead.
    pub async fn start_llama(
        http: &reqwest::Client,
        cfg: &LlamaServerConfig<'_>,
    ) -> Result<(Self, Vec<String>), String> {
        let port = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
        let args: Vec<String> = [
            "-m",
            "llama_cpp.server",
            "--model",
            &cfg.model.display().to_string(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--n_ctx",
            &cfg.n_ctx.to_string(),
            "--n_threads",
            &cfg.threads.to_string(),
            "--n_threads_batch",
            &cfg.threads.to_string(),
            "--interrupt_requests",
            "False",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        tracing::info!(python = %cfg.python.display(), port, "starting llama_cpp.server");
        let started = Instant::now();
        let mut child = Command::new(cfg.python)
            .args(&args)
            .envs(cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", cfg.python.display()))?;
        let stderr = drain_stderr(&mut child);
        let mut server = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            ready_secs: 0.0,
            stderr,
            what: "llama_cpp.server",
        };
        server
            .wait_ready(http, "/v1/models", cfg.startup_timeout, started)
            .await?;
        Ok((server, args))
    }

    /// Poll `path` until it answers 200, the child exits, or `timeout`.
    async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        path: &str,
        timeout: Duration,
        started: Instant,
    ) -> Result<(), String> {
        let url = format!("{}{path}", self.base_url);
        let mut last: String;
        loop {
            if let Some(e) = self.exited().await {
                return Err(format!("{e:#}"));
            }
            match http.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => last = format!("{url} answered {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "{} was not ready within {timeout:?} ({last}){}",
                    self.what,
                    self.stderr_tail()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        self.ready_secs = started.elapsed().as_secs_f64();
        tracing::info!(
            server = self.what,
            url = %self.base_url,
            ready_secs = format!("{:.1}", self.ready_secs),
            "ready"
        );
        Ok(())
    }

    /// `Some(error)` when the child has exited.
    async fn exited(&mut self) -> Option<anyhow::Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(self.died_with(&status.to_string()).await),
            Ok(None) => None,
            Err(e) => Some(anyhow::anyhow!("cannot check on {}: {e}", self.what)),
        }
    }

    async fn died(&mut self, when: &str) -> anyhow::Error {
        // stdout closed: the process is ending; give it a moment to.
        for _ in 0..20 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return self.died_with(&format!("{status}, {when}")).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::anyhow!(
            "{} closed its output {when}{}",
            self.what,
            self.stderr_tail()
        )
    }

    async fn died_with(&self, status: &str) -> anyhow::Error {
        // Let the stderr reader collect the last words.
        tokio::time::sleep(Duration::from_millis(200)).await;
        anyhow::anyhow!("{} exited ({status}){}", self.what, self.stderr_tail())
    }

    /// The end of what the process wrote on stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let s = s.trim();
        if s.is_empty() {
            return String::new();
        }
        let start = s.char_indices().rev().nth(1200).map_or(0, |(i, _)| i);
        format!("; its stderr ends: {}", s[start..].replace('\n', " | "))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Our own child; nothing of its state is kept (temporary ledger).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The address in `forge-node serve`'s `listening on http://ADDR` line.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix("listening on http://")?
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// A loopback port that was free a moment ago (bound, then released: the
/// server that gets it binds it itself; a race with another process is
/// possible but then the server fails to start and says so).
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// `forge-node` next to the running executable (where cargo puts both).
pub fn default_forge_node() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    Ok(exe.with_file_name(format!("forge-node{}", std::env::consts::EXE_SUFFIX)))
}

/// Keep the last [`STDERR_KEEP`] bytes of the child's stderr, read on a
/// thread so a chatty child never blocks on a full pipe.
fn drain_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let keep = Arc::new(Mutex::new(String::new()));
    if let Some(mut err) = child.stderr.take() {
        let sink = Arc::clone(&keep);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > 2 * STDERR_KEEP {
                        let mut cut = s.len() - STDERR_KEEP;
                        while !s.is_char_boundary(cut) {
                            cut += 1;
                        }
                        s.drain(..cut);
                    }
                }
            }
        });
    }
    keep
}

/// The child's stdout, line by line, through a channel (and drained to the
/// end so the child never blocks writing to it).
fn read_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // The receiver stops listening once it has the address.
                let _ = tx.send(line);
            }
        });
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line() {
        assert_eq!(
            parse_listening("listening on http://127.0.0.1:41234\n"),
            Some(SocketAddr::from(([127, 0, 0, 1], 41234)))
        );
        assert_eq!(parse_listening("loading the model"), None);
        assert_eq!(parse_listening("listening on http://nowhere"), None);
    }
}
