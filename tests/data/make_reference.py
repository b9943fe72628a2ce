#!/usr/bin/env python3
"""Independent reference for SmolLM2-135M-Instruct (Q4_1 GGUF).

Writes tests/data/smollm2_reference.json, which the Rust tests compare
against. Nothing here shares code with Forge: weights are dequantised by the
`gguf` package, the forward pass is numpy in float64, and prompts are
tokenised by llama.cpp (llama-cpp-python), whose greedy top tokens are
recorded too.

Usage: python3 tests/data/make_reference.py MODEL.gguf
Needs: pip install gguf numpy llama-cpp-python
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

PROMPTS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. 1234567 + 89 = ",
]
TOP = 40


def load(path):
    r = GGUFReader(path)
    f = lambda k: r.fields[k].contents()
    cfg = dict(
        L=f("llama.block_count"), d=f("llama.embedding_length"), H=f("llama.attention.head_count"),
        Hkv=f("llama.attention.head_count_kv"), F=f("llama.feed_forward_length"),
        base=float(f("llama.rope.freq_base")), eps=float(f("llama.attention.layer_norm_rms_epsilon")),
    )
    w = {}
    for t in r.tensors:
        # GGUF shapes list the innermost dimension first; numpy wants it last.
        shape = tuple(int(x) for x in reversed(t.shape))
        w[t.name] = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float64)
    return cfg, w


def rms(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def rope(x, pos, base):
    # x: [T, heads, dh]; GGUF permutes Q/K for rotation of adjacent pairs.
    dh = x.shape[-1]
    freqs = base ** (-np.arange(0, dh, 2) / dh)
    ang = pos[:, None] * freqs[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def forward(cfg, w, ids):
    L, d, H, Hkv = cfg["L"], cfg["d"], cfg["H"], cfg["Hkv"]
    dh = d // H
    T = len(ids)
    x = w["token_embd.weight"][ids]
    pos = np.arange(T, dtype=np.float64)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(L):
        p = lambda n: w[f"blk.{l}.{n}.weight"]
        h = rms(x, p("attn_norm"), cfg["eps"])
        q = rope((h @ p("attn_q").T).reshape(T, H, dh), pos, cfg["base"])
        k = rope((h @ p("attn_k").T).reshape(T, Hkv, dh), pos, cfg["base"])
        v = (h @ p("attn_v").T).reshape(T, Hkv, dh)
        g = H // Hkv
        k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(dh) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", s, v).reshape(T, d)
        x = x + o @ p("attn_output").T
        h = rms(x, p("ffn_norm"), cfg["eps"])
        gate = h @ p("ffn_gate").T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ p("ffn_up").T)) @ p("ffn_down").T
    head = w.get("output.weight", w["token_embd.weight"])
    return rms(x[-1], w["output_norm.weight"], cfg["eps"]) @ head.T


def main():
    path = sys.argv[1]
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=512, n_threads=2, verbose=False, logits_all=True)
    cfg, w = load(path)
    cases = []
    for text in PROMPTS:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        logits = forward(cfg, w, np.array(ids))
        top = np.argsort(-logits)[:TOP]
        llm.reset()
        llm.eval(ids)
        lc = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
        cases.append(dict(
            prompt=text,
            tokens=[int(i) for i in ids],
            numpy_top=[[int(i), float(logits[i])] for i in top],
            llama_cpp_top=[int(i) for i in np.argsort(-lc)[:5]],
        ))
    json.dump(dict(model_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", cases=cases),
              open("tests/data/smollm2_reference.json", "w"), indent=1)


if __name__ == "__main__":
    main()
