#!/usr/bin/env bash
# A/B of two forge-node builds on the same machine, in one run: each round
# runs `forge-node generate` (greedy, 64 tokens, 2 threads, no receipt) with
# build A then build B on a short and a long prompt, alternating, and the
# table reports the medians of each build's prefill and decode tok/s and
# their ratios B/A. Use it to measure a kernel change: build the old commit,
# copy target/release/forge-node aside, build the new one.
#
#   benches/ab_generate.sh OLD_FORGE_NODE NEW_FORGE_NODE [ROUNDS] > table.md
#
# TEMPERATURE=1 (seed 7) samples instead: prefill and decode tok/s time the
# forward passes only (as llama.cpp's eval times do), so the table also has
# each command's whole wall time, which includes sampling (and the model
# load, the same for both builds).
#
# Needs the pulled default model (`forge-node pull`) and python3.
set -euo pipefail
a=${1:?usage: ab_generate.sh OLD_FORGE_NODE NEW_FORGE_NODE [ROUNDS]}
b=${2:?usage: ab_generate.sh OLD_FORGE_NODE NEW_FORGE_NODE [ROUNDS]}
rounds=${3:-5}
temperature=${TEMPERATURE:-0}
here=$(cd "$(dirname "$0")" && pwd)
short="Write a long story about a robot who learns to paint."
# The long prompt: forge-bench's 518-token prefill-500 passage.
long=$(python3 - "$here/src/prompts.rs" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
m = re.search(r'const LONG_PASSAGE: &str = (r?#*)"(.*?)"\1;', s, re.S)
text = re.sub(r'\s+', ' ', m.group(2).replace('\\\n', '').replace('\\n', '\n'))
print("Read the following text and summarize it in a few sentences.\n\n" + text)
PY
)
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for ((i = 1; i <= rounds; i++)); do
  for build in A B; do
    bin=$a; [ "$build" = B ] && bin=$b
    for name in short long; do
      prompt=$short; [ "$name" = long ] && prompt=$long
      start=$(date +%s.%N)
      out=$("$bin" generate --prompt "$prompt" --max-tokens 64 --temperature "$temperature" --seed 7 --threads 2 --json 2>/dev/null)
      end=$(date +%s.%N)
      python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('$build', '$name', d['prompt_tokens'], d['prefill_tps'], d['decode_tps'], $end - $start)" "$out" >>"$results"
    done
  done
done
python3 - "$results" "$a" "$b" "$rounds" "$temperature" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"A = `{sys.argv[2]}`, B = `{sys.argv[3]}`; {sys.argv[4]} alternating rounds; temperature {sys.argv[5]}; medians.\n")
print("| prompt | prompt tokens | prefill tok/s A | prefill tok/s B | B/A | decode tok/s A | decode tok/s B | B/A | whole command s A | B | A/B |")
print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
for name in ("short", "long"):
    med = lambda build, col: statistics.median(float(r[col]) for r in rows if r[0] == build and r[1] == name)
    n = next(r[2] for r in rows if r[1] == name)
    pa, pb, da, db = med("A", 3), med("B", 3), med("A", 4), med("B", 4)
    wa, wb = med("A", 5), med("B", 5)
    print(f"| {name} | {n} | {pa:.1f} | {pb:.1f} | {pb/pa:.2f}x | {da:.1f} | {db:.1f} | {db/da:.2f}x | {wa:.2f} | {wb:.2f} | {wa/wb:.2f}x |")
PY
