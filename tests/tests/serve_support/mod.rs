//! Driving a real `forge-node serve` process: start it on a free loopback
//! port, wait until it is ready, talk HTTP/1.1 to it, kill it.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Variables of `serve` that must not leak in from the environment of the test run.
const SERVE_ENV: &[&str] = &[
    "FORGE_LISTEN",
    "FORGE_MODEL",
    "FORGE_MODEL_NAME",
    "FORGE_MAX_CONCURRENT",
    "FORGE_MAX_QUEUE",
    "FORGE_REQUEST_TIMEOUT_SECS",
    "FORGE_BODY_LIMIT_BYTES",
    "FORGE_DEFAULT_MAX_TOKENS",
    "FORGE_PRICE_MILLI_PER_CU",
    "FORGE_RECEIPT_WORKERS",
    "FORGE_API_KEYS",
    "FORGE_LEDGER",
    "FORGE_CONFIG",
    "FORGE_BACKEND",
];

/// `target/<profile>/`, the parent of this test executable's `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// A binary of the workspace (`cargo test --workspace --release` builds them all).
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.is_file(),
        "{} is missing: run `cargo test --workspace --release` (it builds every binary), or `cargo build --release -p forge-node`",
        p.display()
    );
    p
}

/// `forge-node` with a clean environment and `home` as `FORGE_HOME`.
pub fn forge_node(home: &Path) -> Command {
    let mut c = Command::new(workspace_bin("forge-node"));
    for v in SERVE_ENV {
        c.env_remove(v);
    }
    c.env("FORGE_HOME", home).env("FORGE_LOG", "error");
    c
}

/// Runs `forge-node args...`, asserting success; returns stdout.
pub fn forge_node_ok(home: &Path, args: &[&str]) -> String {
    let out: Output = forge_node(home)
        .args(args)
        .output()
        .expect("forge-node runs");
    assert!(
        out.status.success(),
        "forge-node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

/// A running server. Killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Server {
    /// Starts `forge-node serve --listen 127.0.0.1:0 args...` and waits until
    /// `/health` answers 200.
    pub fn start(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = forge_node(home);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("forge-node serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "forge-node serve did not print its address: {:?}",
                    child.wait()
                );
            }
        };
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let addr: SocketAddr = base
            .trim_start_matches("http://")
            .parse()
            .expect("an address");
        let server = Self { child, addr, base };
        server.wait_ready(Duration::from_secs(300));
        server
    }

    fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = try_http(self.addr, "GET", "/health", None, &[]) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "forge-node serve was not ready within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 exchange (`Connection: close`); returns status and body.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let (status, body) = try_http_bytes(addr, method, path, body, headers)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// [`try_http`] with the body as bytes.
pub fn try_http_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, raw[split..].to_vec()))
}

/// [`try_http`], panicking on I/O errors.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    try_http(addr, method, path, body, headers).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Fetches receipt `id` as binary (`Accept: application/octet-stream`)
/// into `path`, asserting a 200.
pub fn fetch_receipt(addr: SocketAddr, id: &str, path: &Path) {
    let (status, bytes) = try_http_bytes(
        addr,
        "GET",
        &format!("/v1/receipts/{id}"),
        None,
        &[("Accept", "application/octet-stream")],
    )
    .expect("fetch the receipt");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    std::fs::write(path, bytes).expect("write the receipt");
}

/// A JSON body of a 200 answer.
pub fn json_ok(reply: (u16, String)) -> serde_json::Value {
    assert_eq!(reply.0, 200, "{}", reply.1);
    serde_json::from_str(&reply.1).unwrap_or_else(|e| panic!("{e}: {}", reply.1))
}

/// Starts a streamed request and returns the socket once `min_bytes` of the
/// answer have arrived (the generation is then surely running).
pub fn start_stream(
    addr: SocketAddr,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
    min_bytes: usize,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut got = 0;
    let mut buf = [0u8; 4096];
    while got < min_bytes {
        let n = s.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stream ended early");
        got += n;
    }
    s
}
