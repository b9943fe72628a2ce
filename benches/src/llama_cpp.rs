//! The llama.cpp reference: `benches/llama_cpp_bench.py` (embedded in the
//! binary) run with a Python that has llama-cpp-python
//! (`benches/setup_llama_cpp.sh` installs one), as a child process that
//! answers one command per line ([`LlamaServer`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The reference script, embedded so the binary works from any directory.
pub const SCRIPT: &str = include_str!("../llama_cpp_bench.py");

/// Default Python, relative to the current directory (the repository root).
pub const DEFAULT_VENV_PYTHON: &str = ".venv-bench/bin/python";

/// A prompt handed to the script, rendered with the chat template.
#[derive(Clone, Debug, Serialize)]
pub struct ScriptPrompt {
    /// Name used in tables.
    pub name: String,
    /// Rendered text; llama.cpp tokenizes it.
    pub text: String,
}

/// One timed run of one prompt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LlamaRun {
    /// Seconds to `eval` the prompt (last position's logits included).
    pub prefill_secs: f64,
    /// Seconds for the decode steps.
    pub decode_secs: f64,
}

/// llama.cpp's results for one prompt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LlamaPrompt {
    /// Prompt name.
    pub name: String,
    /// Prompt length in llama.cpp's tokens.
    pub prompt_tokens: usize,
    /// llama.cpp's token ids of the prompt.
    #[serde(default)]
    pub prompt_ids: Vec<u32>,
    /// Timed runs.
    #[serde(default)]
    pub runs: Vec<LlamaRun>,
    /// Greedy tokens of the first run.
    #[serde(default)]
    pub tokens: Option<Vec<u32>>,
}

/// What the script printed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LlamaReport {
    /// Whether llama_cpp could be imported.
    pub available: bool,
    /// Why not, when it could not.
    #[serde(default)]
    pub error: Option<String>,
    /// llama-cpp-python's version.
    #[serde(default)]
    pub llama_cpp_python: Option<String>,
    /// The interpreter that ran the script.
    #[serde(default)]
    pub python: Option<String>,
    /// `llama_print_system_info()`.
    #[serde(default)]
    pub system_info: Option<String>,
    /// Threads (`n_threads` and `n_threads_batch`).
    #[serde(default)]
    pub n_threads: Option<usize>,
    /// Context size.
    #[serde(default)]
    pub n_ctx: Option<usize>,
    /// Seconds to load the model.
    #[serde(default)]
    pub load_secs: Option<f64>,
    /// Peak RSS of the Python process (interpreter and numpy included).
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// Per-prompt results.
    #[serde(default)]
    pub prompts: Vec<LlamaPrompt>,
}

/// Settings of the reference.
#[derive(Clone, Debug)]
pub struct LlamaConfig<'a> {
    /// The GGUF file.
    pub model: &'a Path,
    /// Decode steps per run.
    pub max_tokens: usize,
    /// llama.cpp threads.
    pub threads: usize,
    /// Context size.
    pub n_ctx: usize,
    /// Extra environment of the llama.cpp process (e.g. `OMP_WAIT_POLICY`).
    pub env: &'a [(String, String)],
}

/// The interpreter to use: `explicit` if given, else the first of
/// `./.venv-bench/bin/python`, `<workspace>/.venv-bench/bin/python` that
/// exists, else `python3`.
pub fn resolve_python(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DEFAULT_VENV_PYTHON);
    [PathBuf::from(DEFAULT_VENV_PYTHON), workspace]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// What one `run` command returns.
#[derive(Clone, Debug, Deserialize)]
struct RunOutput {
    prefill_secs: f64,
    decode_secs: f64,
    tokens: Vec<u32>,
}

/// A llama.cpp process (`llama_cpp_bench.py --serve`) holding the model,
/// run prompt by prompt so its runs interleave with forge-engine's and
/// both see the same machine load.
pub struct LlamaServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    report: LlamaReport,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for LlamaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaServer")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl LlamaServer {
    /// Start the script with `python` and wait until the model is loaded
    /// and the prompts tokenized. `Err` carries the reason the reference is
    /// unavailable (no interpreter, no llama_cpp, the script failed).
    pub fn start(
        python: &Path,
        cfg: &LlamaConfig<'_>,
        prompts: &[ScriptPrompt],
    ) -> Result<Self, String> {
        let dir =
            tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let script = dir.path().join("llama_cpp_bench.py");
        let prompts_file = dir.path().join("prompts.json");
        std::fs::write(&script, SCRIPT)
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        let json = serde_json::to_vec(prompts).map_err(|e| e.to_string())?;
        std::fs::write(&prompts_file, json)
            .map_err(|e| format!("cannot write {}: {e}", prompts_file.display()))?;

        tracing::info!(python = %python.display(), "starting the llama.cpp reference");
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--serve")
            .arg("--model")
            .arg(cfg.model)
            .arg("--prompts")
            .arg(&prompts_file)
            .args(["--max-tokens", &cfg.max_tokens.to_string()])
            .args(["--threads", &cfg.threads.to_string()])
            .args(["--n-ctx", &cfg.n_ctx.to_string()])
            .envs(cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout pipe")?);
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = String::new();
                let _ = err.read_to_string(&mut buf);
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&buf);
                }
            });
        }
        let mut server = Self {
            child,
            stdin,
            stdout,
            stderr,
            report: LlamaReport {
                available: false,
                error: None,
                llama_cpp_python: None,
                python: None,
                system_info: None,
                n_threads: None,
                n_ctx: None,
                load_secs: None,
                peak_rss_bytes: None,
                prompts: Vec::new(),
            },
            _dir: dir,
        };
        let hello: LlamaReport = server.read_reply()?;
        if !hello.available {
            return Err(hello
                .error
                .unwrap_or_else(|| "llama_cpp is not available".into()));
        }
        if hello.prompts.len() != prompts.len() {
            return Err(format!(
                "the script tokenized {} prompts, expected {}",
                hello.prompts.len(),
                prompts.len()
            ));
        }
        server.report = hello;
        Ok(server)
    }

    /// The prompts as llama.cpp tokenized them.
    pub fn prompts(&self) -> &[LlamaPrompt] {
        &self.report.prompts
    }

    /// An untimed warm-up run on the longest prompt.
    pub fn warmup(&mut self) -> Result<(), String> {
        self.send("warmup")?;
        let _: serde_json::Value = self.read_reply()?;
        Ok(())
    }

    /// One timed run of prompt `i`; the result is kept for [`finish`](Self::finish).
    pub fn run(&mut self, i: usize) -> Result<LlamaRun, String> {
        self.send(&format!("run {i}"))?;
        let out: RunOutput = self.read_reply()?;
        let p = self
            .report
            .prompts
            .get_mut(i)
            .ok_or("prompt index out of range")?;
        let run = LlamaRun {
            prefill_secs: out.prefill_secs,
            decode_secs: out.decode_secs,
        };
        tracing::info!(
            prompt = %p.name,
            prefill_tps = format!("{:.1}", p.prompt_tokens as f64 / out.prefill_secs.max(1e-9)),
            decode_tps = format!("{:.1}", out.tokens.len() as f64 / out.decode_secs.max(1e-9)),
            "llama.cpp"
        );
        p.runs.push(run.clone());
        if p.tokens.is_none() {
            p.tokens = Some(out.tokens);
        }
        Ok(run)
    }

    /// Stop the process (it reports its peak RSS) and return all results.
    pub fn finish(mut self) -> LlamaReport {
        #[derive(Deserialize)]
        struct Bye {
            peak_rss_bytes: Option<u64>,
        }
        if self.send("quit").is_ok()
            && let Ok(bye) = self.read_reply::<Bye>()
        {
            self.report.peak_rss_bytes = bye.peak_rss_bytes;
        }
        drop(self.stdin.take());
        let _ = self.child.wait();
        self.report.clone()
    }

    fn send(&mut self, cmd: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin is closed")?;
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("llama.cpp process: {e}{}", self.stderr_tail()))
    }

    fn read_reply<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading llama.cpp's output: {e}"))?;
            if n == 0 {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(format!(
                    "the llama.cpp process ended ({status}){}",
                    self.stderr_tail()
                ));
            }
            if line.trim_start().starts_with('{') {
                break;
            }
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("unreadable script output: {e}"))?;
        if let Some(err) = value.get("error").and_then(|e| e.as_str())
            && value.get("available").is_none()
        {
            return Err(format!("llama.cpp script: {err}"));
        }
        serde_json::from_value(value).map_err(|e| format!("unexpected script output: {e}"))
    }

    fn stderr_tail(&self) -> String {
        // Give the stderr reader a moment to collect a dying process's traceback.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let s = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        if s.trim().is_empty() {
            String::new()
        } else {
            format!("; stderr: {}", tail(&s, 400))
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            // Our own child: closing stdin ends it; kill it if it lingers.
            std::thread::sleep(std::time::Duration::from_millis(100));
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let s = s.trim();
    let start = s.char_indices().rev().nth(n).map_or(0, |(i, _)| i);
    s[start..].replace('\n', " | ")
}
