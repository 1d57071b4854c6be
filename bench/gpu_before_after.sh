#!/usr/bin/env bash
# Training step and inference of every registered model from two source trees in one call (a
# refactor's "same time as before", or a change's effect), alternating per model so that drift of
# the card hits both alike. On the GPU machine, with both trees carried (e.g. git archive REV):
#   . .gpu/enter.sh && bash bench/gpu_before_after.sh .snapA .snapB "$OUT"
# Env: MODELS (all registered CD models), ROUNDS (1).
set -uo pipefail
before=$1; after=$2; out=${3:-bench-out}; mkdir -p "$out"
models=${MODELS:-tinycd fc_ef fc_siam_conc fc_siam_diff snunet_c16 bit_r18 changeformer_mit_b0 changer_ex_mit_b0}
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$out/gpu.txt"
for round in $(seq "${ROUNDS:-1}"); do
  for m in $models; do
    for side in before after; do
      dir=$before; [ "$side" = after ] && dir=$after
      line=$(cd "$dir" && timeout 120 deno run -A bench/gpu_train_step.ts --models "$m" 2>&1 | grep '^{')
      echo "{\"side\":\"$side\",\"round\":$round,${line#\{}" | tee -a "$out/before_after.jsonl"
    done
  done
done
python3 - "$out/before_after.jsonl" <<'PY' | tee "$out/before_after.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| model | train ms before / after | infer ms before / after | peak GB before / after |")
print("|---|---|---|---|")
for m in dict.fromkeys(r["model"] for r in rows):
    side = lambda s, k: min(r[k] for r in rows if r["model"] == m and r["side"] == s)
    print(f"| {m} | {side('before','train_ms')} / {side('after','train_ms')} | "
          f"{side('before','infer_ms')} / {side('after','infer_ms')} | "
          f"{side('before','peak_pool_gb')} / {side('after','peak_pool_gb')} |")
PY
