#!/usr/bin/env python3
"""llama.cpp reference for `forge-bench decode`.

Runs llama.cpp (through llama-cpp-python) on the same GGUF and prompts as
forge-engine. Prompts come as a JSON file: [{"name": ..., "text": ...}, ...],
the text already rendered with the chat template; llama.cpp tokenizes it
itself (no BOS, special tokens parsed).

One run of a prompt: reset the context, `eval` the prompt tokens (the
prefill; llama.cpp computes the last position's logits), then exactly
--max-tokens decode steps, each = argmax of the last logits + `eval` of that
one token. Stop tokens are ignored so every run decodes the full length.

Modes (every output is one JSON object per line on stdout):
  batch (default)  warm up, do --runs runs of every prompt, print one report.
  --serve          print a "hello" line (load time, prompt token ids), then
                   answer stdin commands one line each:
                     warmup    -> {"ok": true}
                     run I     -> {"prefill_secs", "decode_secs", "tokens"}
                     quit      -> {"peak_rss_bytes"} and exit (also on EOF)
                   forge-bench uses this to interleave llama.cpp's runs with
                   its own, so both engines see the same machine load.

If llama_cpp cannot be imported, prints {"available": false, "error": ...}
and exits 0: the caller reports the reference as unavailable.
Exit status: 0 ok (including "unavailable"), 1 failure, 2 usage.
"""

import argparse
import json
import sys
import time


def peak_rss_bytes():
    """VmHWM of this process. Not ru_maxrss: on Linux that carries the parent's
    high-water mark over fork + exec, so it would report the Rust process's."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Bench:
    def __init__(self, np, llama_cpp, args, prompts):
        self.np = np
        self.llama_cpp = llama_cpp
        t = time.perf_counter()
        self.llm = llama_cpp.Llama(
            model_path=args.model,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            n_ctx=args.n_ctx,
            verbose=False,
        )
        self.load_secs = time.perf_counter() - t
        self.n_vocab = self.llm.n_vocab()
        self.ctx = self.llm._ctx.ctx
        self.max_tokens = args.max_tokens
        self.warmup_tokens = args.warmup_tokens
        self.names = [p["name"] for p in prompts]
        self.tokens = []
        for p in prompts:
            toks = self.llm.tokenize(p["text"].encode("utf-8"), add_bos=False, special=True)
            if len(toks) + args.max_tokens > args.n_ctx:
                raise SystemExit(f"prompt {p['name']}: {len(toks)} + {args.max_tokens} tokens exceed n_ctx {args.n_ctx}")
            self.tokens.append(toks)
        self.meta = {
            "available": True,
            "llama_cpp_python": getattr(llama_cpp, "__version__", "unknown"),
            "python": sys.executable,
            "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
            "n_threads": args.threads,
            "n_ctx": args.n_ctx,
            "load_secs": self.load_secs,
        }

    def last_logits(self):
        ptr = self.llama_cpp.llama_get_logits_ith(self.ctx, -1)
        return self.np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def run(self, i, n=None):
        n = self.max_tokens if n is None else n
        llm, np = self.llm, self.np
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(self.tokens[i])
        logits = self.last_logits()
        prefill = time.perf_counter() - t0
        out = []
        t1 = time.perf_counter()
        for _ in range(n):
            tok = int(np.argmax(logits))  # lowest index among ties, like forge's argmax
            out.append(tok)
            llm.eval([tok])
            logits = self.last_logits()
        decode = time.perf_counter() - t1
        return {"prefill_secs": prefill, "decode_secs": decode, "tokens": out}

    def warmup(self):
        longest = max(range(len(self.tokens)), key=lambda i: len(self.tokens[i]))
        self.run(longest, self.warmup_tokens)

    def prompt_info(self):
        return [{"name": n, "prompt_tokens": len(t), "prompt_ids": t} for n, t in zip(self.names, self.tokens)]


def serve(bench):
    emit({**bench.meta, "prompts": bench.prompt_info()})
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "warmup":
            bench.warmup()
            emit({"ok": True})
        elif cmd[0] == "run" and len(cmd) == 2 and cmd[1].isdigit() and int(cmd[1]) < len(bench.tokens):
            emit(bench.run(int(cmd[1])))
        elif cmd[0] == "quit":
            break
        else:
            emit({"error": f"unknown command: {line.strip()}"})
    emit({"peak_rss_bytes": peak_rss_bytes()})


def batch(bench, runs):
    bench.warmup()
    results = [{**p, "runs": [], "tokens": None} for p in bench.prompt_info()]
    for _ in range(runs):
        for i, r in enumerate(results):
            out = bench.run(i)
            r["runs"].append({"prefill_secs": out["prefill_secs"], "decode_secs": out["decode_secs"]})
            if r["tokens"] is None:
                r["tokens"] = out["tokens"]
    emit({**bench.meta, "peak_rss_bytes": peak_rss_bytes(), "prompts": results})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="JSON file of {name, text}")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--warmup-tokens", type=int, default=8)
    ap.add_argument("--serve", action="store_true", help="answer commands on stdin (see above)")
    args = ap.parse_args()

    try:
        import numpy as np
        import llama_cpp
    except Exception as e:  # noqa: BLE001 - any import failure means "unavailable"
        emit({"available": False, "error": f"cannot import llama_cpp: {e}", "python": sys.executable})
        return 0

    with open(args.prompts, encoding="utf-8") as f:
        prompts = json.load(f)
    bench = Bench(np, llama_cpp, args, prompts)
    if args.serve:
        serve(bench)
    else:
        batch(bench, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
