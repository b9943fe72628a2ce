//! `forge-node serve` on the real model, driven by real OpenAI clients: the
//! official `openai` Python package (in a venv under `target/py-venv`,
//! created on first use) and the Rust `async-openai` crate. Every receipt an
//! answer names is fetched and checked with `forge-verify`.

mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serve_support::{
    Server, fetch_receipt, forge_node_ok, http, json_ok, profile_dir, workspace_bin,
};

/// The `openai` package version the Python client test pins.
const OPENAI_PY: &str = "3.54.0";
const MODEL: &str = "smollm2";

/// `target/py-venv` with `openai==OPENAI_PY`, created (quietly) if missing.
fn py_venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = profile_dir().parent().expect("target/").join("py-venv");
        let python = venv.join("bin").join("python");
        let pinned = || {
            Command::new(&python)
                .args([
                    "-c",
                    &format!("import openai, sys; sys.exit(openai.__version__ != {OPENAI_PY:?})"),
                ])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !pinned() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "`python3 -m venv {}` failed (Debian/Ubuntu: apt-get install python3-venv)",
                venv.display()
            );
            let ok = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    &format!("openai=={OPENAI_PY}"),
                ])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok && pinned(),
                "installing openai=={OPENAI_PY} into {} failed",
                venv.display()
            );
        }
        python
    })
    .clone()
}

/// A server on the real model with two accounts: one with credit (its key is
/// given with `--api-key`), one without. Returns it with both keys.
fn real_server(home: &Path) -> (Server, &'static str, String) {
    const KEY: &str = "sk-forge-test";
    let model = forge_tests::smollm2_path();
    let broke = forge_node_ok(home, &["account", "create", "--name", "broke"])
        .trim()
        .to_string();
    let server = Server::start(
        home,
        &[
            "--model",
            model.to_str().unwrap(),
            "--model-name",
            MODEL,
            "--api-key",
            KEY,
            "--max-concurrent",
            "4",
        ],
        &[],
    );
    forge_node_ok(home, &["account", "credit", KEY, "100000000"]);
    (server, KEY, broke)
}

/// Fetches a receipt as binary and runs `forge-verify` on it with the node's
/// verifying key and the model; returns forge-verify's exit code.
fn verify_receipt(server: &Server, home: &Path, id: &str) -> i32 {
    let file = home.join(format!("{id}.bin"));
    fetch_receipt(server.addr, id, &file);
    let out = Command::new(workspace_bin("forge-verify"))
        .arg("--vk")
        .arg(home.join("cu.vk"))
        .arg("--model")
        .arg(forge_tests::smollm2_path())
        .arg(&file)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code().unwrap_or(-1)
}

#[test]
fn python_openai_sdk_against_the_real_model() {
    let home = tempfile::tempdir().unwrap();
    let (server, key, broke) = real_server(home.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join("openai_client.py");
    let out = Command::new(py_venv())
        .arg(&script)
        .args([server.base.as_str(), MODEL, key, broke.as_str()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for class in [
        "BadRequestError",
        "NotFoundError",
        "AuthenticationError",
        "RateLimitError",
    ] {
        assert!(
            stdout.contains(&format!("{class}:")),
            "{class} was not exercised"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("usage: ") && l.contains("receipt=")),
        "no usage line with a receipt id"
    );
    let result: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .expect("a RESULT line"),
    )
    .unwrap();
    let receipts = result["receipts"].as_array().unwrap();
    // 3 plain answers, 2 with logprobs, n=1 + n=2, and n=2 streamed.
    assert_eq!(receipts.len(), 10, "{receipts:?}");
    for id in receipts {
        assert_eq!(
            verify_receipt(&server, home.path(), id.as_str().unwrap()),
            0,
            "forge-verify rejected {id}"
        );
    }
    // The paying account was charged for exactly those receipts, one per choice.
    let shown: serde_json::Value = serde_json::from_str(&forge_node_ok(
        home.path(),
        &["account", "show", key, "--json"],
    ))
    .unwrap();
    assert_eq!(shown["receipts"], receipts.len(), "{shown}");
    let balance = json_ok(http(
        server.addr,
        "GET",
        "/v1/balance",
        None,
        &[("Authorization", &format!("Bearer {key}"))],
    ));
    assert_eq!(balance["spent_milli_cu"], shown["spent_milli_cu"]);
}

#[test]
fn rust_async_openai_against_the_real_model() {
    use async_openai::Client;
    use async_openai::config::OpenAIConfig;
    use async_openai::error::OpenAIError;
    use async_openai::types::chat::{
        ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
        ChatCompletionStreamOptions, CreateChatCompletionRequestArgs,
    };
    use async_openai::types::completions::CreateCompletionRequestArgs;
    use futures_util::StreamExt;

    let home = tempfile::tempdir().unwrap();
    let (server, key, _) = real_server(home.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::with_config(
            OpenAIConfig::new()
                .with_api_base(format!("{}/v1", server.base))
                .with_api_key(key),
        );
        let models = client.models().list().await.unwrap();
        assert_eq!(models.data[0].id, MODEL);

        let req = CreateChatCompletionRequestArgs::default()
            .model(MODEL)
            .messages(vec![
                ChatCompletionRequestSystemMessage::from("You are a helpful assistant.").into(),
                ChatCompletionRequestUserMessage::from("What is the capital of France?").into(),
            ])
            .temperature(0.0)
            .max_completion_tokens(32u32)
            .build()
            .unwrap();
        let chat = client.chat().create(req.clone()).await.unwrap();
        let answer = chat.choices[0].message.content.clone().unwrap_or_default();
        assert!(answer.contains("Paris"), "{answer}");
        let usage = chat.usage.unwrap();
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens
        );

        // The same request streamed gives the same text, then usage.
        let mut streamed_req = req;
        streamed_req.stream_options = Some(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        });
        let mut stream = client.chat().create_stream(streamed_req).await.unwrap();
        let (mut text, mut final_usage, mut finish) = (String::new(), None, None);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            if let Some(c) = chunk.choices.first() {
                text.push_str(c.delta.content.as_deref().unwrap_or(""));
                if c.finish_reason.is_some() {
                    finish = c.finish_reason;
                }
            }
            if chunk.usage.is_some() {
                final_usage = chunk.usage;
            }
        }
        assert_eq!(text, answer);
        assert!(finish.is_some());
        assert_eq!(
            final_usage.unwrap().completion_tokens,
            usage.completion_tokens
        );

        let comp = client
            .completions()
            .create(
                CreateCompletionRequestArgs::default()
                    .model(MODEL)
                    .prompt("Once upon a time")
                    .max_tokens(6u32)
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(!comp.choices[0].text.is_empty());

        // Errors arrive as the OpenAI envelope, parsed by the client.
        let bad = CreateChatCompletionRequestArgs::default()
            .model("gpt-4o")
            .messages(vec![ChatCompletionRequestUserMessage::from("hi").into()])
            .build()
            .unwrap();
        match client.chat().create(bad).await {
            Err(OpenAIError::ApiError(e)) => assert_eq!(
                e.api_error.code.as_deref(),
                Some("model_not_found"),
                "{e:?}"
            ),
            other => panic!("expected an API error, got {other:?}"),
        }
    });
}
