"""Drive a Forge node with the official `openai` Python package.

Usage: openai_client.py BASE_URL MODEL API_KEY BROKE_KEY

API_KEY has credit, BROKE_KEY has none. Prints the streamed tokens and the
final usage with the receipt id, and on its last line `RESULT <json>` with
the receipt ids the caller should verify. Exits non-zero on the first failed
expectation.
"""

import json
import sys

import openai
from openai import OpenAI

base, model, key, broke_key = sys.argv[1:5]
client = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=300)
receipts = []


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def forge_of(obj):
    extra = obj.model_extra or {}
    check("forge" in extra and extra["forge"], f"no forge object on {obj!r}")
    return extra["forge"]


# Models.
ids = [m.id for m in client.models.list().data]
check(model in ids, f"{model} not in {ids}")
check(client.models.retrieve(model).id == model, "models.retrieve")

# Chat, not streamed: the design's reference answer under greedy decoding.
raw = client.chat.completions.with_raw_response.create(
    model=model,
    messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    temperature=0,
    max_tokens=32,
    seed=1,
)
chat = raw.parse()
answer = chat.choices[0].message.content
print("chat:", repr(answer))
check("Paris" in answer, f"unexpected answer {answer!r}")
check(chat.choices[0].finish_reason == "stop", chat.choices[0].finish_reason)
check(chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens, "usage sums")
forge = forge_of(chat)
check(raw.headers.get("x-forge-receipt") == forge["receipt_id"], "x-forge-receipt header")
check(forge["flops"] > 0 and forge["milli_cu"] == forge["flops"] // 10**6, f"forge cost {forge}")
receipts.append(forge["receipt_id"])

# Chat, streamed with usage: print the tokens, then the usage and receipt id.
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Write one sentence about the sea."}],
    max_completion_tokens=24,
    temperature=0.7,
    seed=3,
    stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage, stream_forge, roles = [], None, None, None, []
for chunk in stream:
    if chunk.choices:
        delta = chunk.choices[0].delta
        if delta.role:
            roles.append(delta.role)
        if delta.content:
            pieces.append(delta.content)
            print(delta.content, end="", flush=True)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    else:
        usage = chunk.usage
        stream_forge = forge_of(chunk)
print()
check(roles == ["assistant"], f"roles {roles}")
check(finish in ("stop", "length"), f"finish {finish}")
check(usage is not None and usage.completion_tokens >= 1, f"usage {usage}")
print(f"usage: prompt={usage.prompt_tokens} completion={usage.completion_tokens} "
      f"total={usage.total_tokens} receipt={stream_forge['receipt_id']}")
receipts.append(stream_forge["receipt_id"])

# Text completion.
comp = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
print("completion:", repr(comp.choices[0].text))
check(comp.object == "text_completion", comp.object)
check(comp.usage.completion_tokens >= 1, "completion usage")
receipts.append(forge_of(comp)["receipt_id"])

# Chat log-probabilities, greedy: the sampled token is the most likely one,
# and the tokens' bytes spell the answer.
france = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
lp_chat = client.chat.completions.create(
    model=model, messages=france, temperature=0, max_tokens=32, seed=1, logprobs=True, top_logprobs=3)
content = lp_chat.choices[0].logprobs.content
check(lp_chat.choices[0].message.content == answer, "logprobs changed the greedy answer")
check(len(content) >= 1, "no logprobs content")
for entry in content:
    check(entry.logprob <= 0 and len(entry.top_logprobs) == 3, f"entry {entry}")
    check(entry.top_logprobs[0].token == entry.token, f"greedy token is not the most likely: {entry}")
    check(entry.top_logprobs[0].logprob == entry.logprob, f"{entry}")
    check(all(a.logprob >= b.logprob for a, b in zip(entry.top_logprobs, entry.top_logprobs[1:])), f"order {entry}")
spelled = b"".join(bytes(e.bytes) for e in content).decode("utf-8", "replace")
check(spelled == answer, f"logprob tokens spell {spelled!r}, the answer is {answer!r}")
print("chat logprobs:", [(e.token, round(e.logprob, 3)) for e in content[:5]])
receipts.append(forge_of(lp_chat)["receipt_id"])

# Completion log-probabilities.
lp_comp = client.completions.create(
    model=model, prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=2)
lp = lp_comp.choices[0].logprobs
check(len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) >= 1, f"{lp}")
check(lp.text_offset[0] == len("The capital of France is"), f"text_offset {lp.text_offset}")
check(all(tok in top and len(top) <= 3 for tok, top in zip(lp.tokens, lp.top_logprobs)), f"{lp.top_logprobs}")
check(lp_comp.choices[0].text == comp.choices[0].text[:len(lp_comp.choices[0].text)], "greedy completions disagree")
print("completion logprobs:", list(zip(lp.tokens, lp.text_offset)))
receipts.append(forge_of(lp_comp)["receipt_id"])

# n = 2: two choices, two receipts, in the header too; choice 0 repeats the
# n = 1 answer of the same seed.
one = client.chat.completions.create(model=model, messages=france, max_tokens=12, temperature=1.0, seed=77)
raw_n = client.chat.completions.with_raw_response.create(
    model=model, messages=france, max_tokens=12, temperature=1.0, seed=77, n=2)
two = raw_n.parse()
check([c.index for c in two.choices] == [0, 1], f"indices {[c.index for c in two.choices]}")
check(two.choices[0].message.content == one.choices[0].message.content, "choice 0 differs from n=1 with its seed")
ids = forge_of(two)["receipt_ids"]
check(len(ids) == 2 and len(set(ids)) == 2, f"receipt ids {ids}")
check(raw_n.headers.get("x-forge-receipt") == ",".join(ids), f"header {raw_n.headers.get('x-forge-receipt')}")
check(two.usage.prompt_tokens == one.usage.prompt_tokens, "prompt counted once")
check(2 <= two.usage.completion_tokens <= 24, f"completion tokens summed over the choices: {two.usage}")
print("n=2:", [c.message.content for c in two.choices])
receipts.append(forge_of(one)["receipt_id"])
receipts.extend(ids)

# n = 2 streamed with logprobs: chunks of both choices, each with its index.
raw_stream = client.chat.completions.with_raw_response.create(
    model=model, messages=france, max_tokens=10, temperature=0.8, seed=5, n=2, logprobs=True, stream=True,
    stream_options={"include_usage": True})
check(len(raw_stream.headers.get("x-forge-receipt", "").split(",")) == 2, "stream header")
texts, lps, seen, stream_ids = {0: "", 1: ""}, {0: 0, 1: 0}, [], None
for chunk in raw_stream.parse():
    if not chunk.choices:
        stream_ids = forge_of(chunk)["receipt_ids"]
        continue
    c = chunk.choices[0]
    seen.append(c.index)
    texts[c.index] += c.delta.content or ""
    if c.logprobs and c.logprobs.content:
        lps[c.index] += len(c.logprobs.content)
check(set(seen) == {0, 1}, f"indices seen {set(seen)}")
check(stream_ids is not None and ",".join(stream_ids) == raw_stream.headers.get("x-forge-receipt"), "stream receipts")
check(all(n >= 1 for n in lps.values()), f"streamed logprobs {lps}")
print("n=2 streamed:", texts)
receipts.extend(stream_ids)


# Errors: the SDK raises the right class, with the param and code we sent.
def expect(cls, fn, param=None, code=None):
    try:
        fn()
    except cls as e:
        body = e.body if isinstance(e.body, dict) else {}
        check(param is None or body.get("param") == param, f"{cls.__name__}: param {body.get('param')!r} != {param!r}")
        check(code is None or body.get("code") == code, f"{cls.__name__}: code {body.get('code')!r} != {code!r}")
        print(f"{cls.__name__}: {e.message}")
        return
    except Exception as e:  # noqa: BLE001
        raise SystemExit(f"FAILED: expected {cls.__name__}, got {type(e).__name__}: {e}")
    raise SystemExit(f"FAILED: expected {cls.__name__}, got no error")


hi = [{"role": "user", "content": "hi"}]
expect(openai.BadRequestError, lambda: client.chat.completions.create(
    model=model, messages=hi, tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]), param="tools")
expect(openai.BadRequestError, lambda: client.chat.completions.create(model=model, messages=hi, n=0), param="n")
expect(openai.BadRequestError, lambda: client.chat.completions.create(model=model, messages=hi, n=9), param="n")
expect(openai.BadRequestError, lambda: client.chat.completions.create(
    model=model, messages=hi, logprobs=True, top_logprobs=21), param="top_logprobs")
expect(openai.BadRequestError, lambda: client.chat.completions.create(
    model=model, messages=hi, logprobs=False, top_logprobs=2), param="top_logprobs")
expect(openai.BadRequestError, lambda: client.completions.create(model=model, prompt="x", logprobs=6), param="logprobs")
expect(openai.BadRequestError, lambda: client.chat.completions.create(
    model=model, messages=hi, response_format={"type": "json_object"}), param="response_format")
expect(openai.BadRequestError, lambda: client.chat.completions.create(model=model, messages=hi, temperature=3), param="temperature")
expect(openai.BadRequestError, lambda: client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "word " * 9000}]), code="context_length_exceeded")
expect(openai.NotFoundError, lambda: client.chat.completions.create(model="gpt-4o", messages=hi), code="model_not_found")
expect(openai.NotFoundError, lambda: client.models.retrieve("gpt-4o"))
bad = OpenAI(base_url=f"{base}/v1", api_key="sk-not-a-forge-key", max_retries=0)
expect(openai.AuthenticationError, lambda: bad.chat.completions.create(model=model, messages=hi), code="invalid_api_key")
broke = OpenAI(base_url=f"{base}/v1", api_key=broke_key, max_retries=0)
expect(openai.RateLimitError, lambda: broke.chat.completions.create(model=model, messages=hi, max_tokens=4),
       code="insufficient_quota")

print("RESULT " + json.dumps({"receipts": receipts, "answer": answer}))
