#!/usr/bin/env bash
# The paper's experiment on the synthetic benchmark at 512×512 (3,900 train / 100 val / 1,000
# test pairs), one model per call: 3 teachers, then 2 teachers sharing the same M_O. Writes
# MODEL-t3.tgz and MODEL-t2.tgz (report.html, results.json, logs; no checkpoints) under OUT:
#   . .gpu/enter.sh && MODEL=tinycd ITERS=400 bash bench/gpu_experiment.sh "$OUT"
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
model=${MODEL:-tinycd}; iters=${ITERS:-400}; sit=${STUDENT_ITERS:-$iters}; every=${VAL_EVERY:-200}
exp=${EXP:-/tmp/cd-exp-$model}
export NO_COLOR=1
mkdir -p "$exp/t3" "$exp/t2"
t0=$SECONDS
[ -d "$exp/data/train" ] || deno run -A cli/synth.ts --out "$exp/data" --pairs 5000 --size 512 \
  --val 100 --test 1000 --quiet || exit 1
echo "synth: $((SECONDS - t0)) s"
ln -sfn "$exp/data" "$exp/t3/data"; ln -sfn "$exp/data" "$exp/t2/data"
for t in 3 2; do
  [ "$t" = 2 ] && ln -sfn "$exp/t3/original" "$exp/t2/original"
  t0=$SECONDS
  deno run -A cli/demo.ts --out "$exp/t$t" --model "$model" --size 512 --iters "$iters" \
    --student-iters "$sit" --batch 8 --val-every "$every" --teachers "$t" > "$exp/t$t.log" 2>&1
  echo "$t teachers: $((SECONDS - t0)) s, exit $?"
  tr '\r' '\n' < "$exp/t$t.log" | grep -v "it/s" | tail -40
  tar czf "$out/$model-t$t.tgz" -C "$exp" --exclude='*.safetensors' --exclude=data "t$t" "t$t.log"
done
