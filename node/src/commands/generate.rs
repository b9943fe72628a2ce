//! `forge-node generate`.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use forge_engine::{
    Backend, ChatMessage, GenerateRequest, Generation, Model, SamplingParams, TraceSink, cu_f64,
    generate as run,
};
use forge_node::hex;
use forge_proofs::{CommitmentSink, NodeKey, ReceiptBuilder, attach_self_audit};

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The user's message.
    #[arg(long)]
    prompt: String,
    /// System message (default: the model's built-in one).
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as raw text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// GGUF model file (default: the pulled SmolLM2-135M-Instruct).
    #[arg(long, env = "FORGE_MODEL")]
    model: Option<PathBuf>,
    /// Compute backend: cpu (exact kernels), flex, wgpu, cuda.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Write the signed receipt (FRGR v1) to this file.
    #[arg(long, value_name = "FILE")]
    receipt: Option<PathBuf>,
    /// Non-interactive spot checks embedded in the receipt. 8 is the design's
    /// reference point: it catches a cheat that touches a fraction f of
    /// (layer, position) cells with probability 1-(1-f)^8 (a wrong or
    /// approximated model: f near 1; one skipped layer of SmolLM2's 30:
    /// 24%) at a few hundred KB of openings for short answers; interactive
    /// audits with fresh seeds do the rest.
    #[arg(long, default_value_t = 8, requires = "receipt")]
    checks: u32,
}

/// Load the model, run one prompt, print the answer.
pub(crate) fn generate(args: GenerateArgs) -> Result<()> {
    let path = super::resolve_model(args.model.as_deref())?;
    let model =
        Model::load(&path, args.backend).with_context(|| format!("loading {}", path.display()))?;
    let text = if args.raw {
        args.prompt.clone()
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &args.system {
            msgs.push(ChatMessage::new("system", s));
        }
        msgs.push(ChatMessage::new("user", &args.prompt));
        model
            .chat_template()
            .context("the model has no ChatML chat template; use --raw")?
            .render(&msgs, true)?
    };
    let req = GenerateRequest {
        prompt: model.tokenizer().encode(&text)?,
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
            ..SamplingParams::default()
        },
        stop: args.stop.clone(),
    };
    let json = args.json;
    let mut sink = match &args.receipt {
        Some(_) => {
            Some(CommitmentSink::for_model(&model).context("starting the trace commitment")?)
        }
        None => None,
    };
    let out = run(
        &model,
        &req,
        sink.as_mut().map(|s| s as &mut dyn TraceSink),
        |ev| {
            if !json {
                let mut stdout = std::io::stdout();
                let _ = stdout.write_all(ev.text.as_bytes());
                let _ = stdout.flush();
            }
            ControlFlow::Continue(())
        },
    )?;
    if let (Some(path), Some(sink)) = (&args.receipt, sink) {
        write_receipt(&model, &req, &out, sink, path, args.checks)?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let v = serde_json::json!({
            "text": out.text,
            "tokens": out.tokens,
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.tokens.len(),
            "flops": out.flops,
            "cu": cu_f64(out.flops),
            "finish_reason": out.finish_reason.as_str(),
            "prefill_tps": out.prefill_tps(),
            "decode_tps": out.decode_tps(),
            "backend": model.backend().name(),
            "model_id": hex(&model.model_id()),
        });
        writeln!(stdout, "{v}")?;
    } else {
        writeln!(stdout)?;
        tracing::info!(
            prompt_tokens = out.prompt_tokens,
            completion_tokens = out.tokens.len(),
            flops = %out.flops,
            cu = cu_f64(out.flops),
            finish_reason = out.finish_reason.as_str(),
            prefill_tps = format!("{:.1}", out.prefill_tps()),
            decode_tps = format!("{:.1}", out.decode_tps()),
            "done"
        );
    }
    Ok(())
}

/// Commit, sign, prove, self-audit and write the receipt of `out`.
fn write_receipt(
    model: &Model,
    req: &GenerateRequest,
    out: &Generation,
    sink: CommitmentSink,
    path: &std::path::Path,
    checks: u32,
) -> Result<()> {
    let commitment = sink.finish().context("finishing the trace commitment")?;
    let key =
        NodeKey::load_or_create(&forge_node::forge_home()?).context("loading the node key")?;
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    let mut receipt = ReceiptBuilder::new(model, &key, forge_circuits::canonical_pk())
        .build(id, req, out, &commitment)
        .context("building the receipt")?;
    if checks > 0 {
        attach_self_audit(
            &mut receipt,
            &commitment,
            &req.prompt,
            &out.tokens,
            &key,
            checks,
        )
        .context("opening the spot checks")?;
    }
    let bytes = receipt.to_bytes().context("encoding the receipt")?;
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), bytes = bytes.len(), checks, root = %hex(&commitment.root()), "receipt written");
    Ok(())
}
