#!/usr/bin/env bash
# Honest receipts on SmolLM2 from N different seeds must all verify:
# each seed runs `forge-node generate --receipt` (sampled, 8 embedded spot
# checks) and `forge-verify --model` (every cell re-executed bit for bit).
# Usage: benches/honest_seeds_smollm2.sh [N=1000] [FIRST_SEED=0]
# Prints one line per failure and a final "N passed, N failed" line.
set -u
n=${1:-1000}; first=${2:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
node="$root/target/release/forge-node"; verify="$root/target/release/forge-verify"
[ -x "$node" ] && [ -x "$verify" ] || { echo "build first: cargo build --release -p forge-node -p forge-proofs" >&2; exit 2; }
model=$("$node" pull 2>/dev/null) || { echo "cannot pull the model" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
prompts=("Write a haiku about rain." "Name three colours." "What is 2 + 2?" "Tell me a fact about the Moon.")
for ((s = first; s < first + n; s++)); do
    p=${prompts[$((s % ${#prompts[@]}))]}
    if FORGE_LOG=error "$node" generate --model "$model" --prompt "$p" --temperature 0.8 --top-p 0.95 --seed "$s" \
            --max-tokens 16 --receipt "$tmp/r.bin" >/dev/null 2>"$tmp/gen.err" \
        && "$verify" --model "$model" "$tmp/r.bin" 2>"$tmp/verify.err" >/dev/null; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "seed $s failed:"; cat "$tmp/gen.err" "$tmp/verify.err"
    fi
    (( (s - first + 1) % 25 == 0 )) && echo "progress: $((s - first + 1)) seeds, $pass passed, $fail failed"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
