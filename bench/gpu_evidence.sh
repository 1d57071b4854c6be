#!/usr/bin/env bash
# Issue 21's experiment with the project's own commands, one call for everything:
#   . .gpu/enter.sh && bash bench/gpu_evidence.sh "$OUT"
# For each model and seed: M_O, O-P with the paper's fixed thresholds (2 and 3 teachers, one M_O
# shared) and with thresholds from the data (op --teachers auto: K = 1..4 equal-count partitions,
# K chosen on validation; its k2/ and k3/ are the 2- and 3-teacher auto runs), each O-P with hard
# and soft routing (--route-margin) and oracle routing, then MTKD (λ by the paper's grid on
# validation) beside the λ = 0 control (distill --control). bench/evidence_summary.ts writes
# OUT/SUMMARY.md: mean ± std over seeds, and whether MTKD beats the control beyond the spread.
# Env (defaults: the GPU run; shrink them for a CPU check, e.g. SIZE=32 PAIRS=48 ITERS=2 SEEDS=0):
#   MODELS (tinycd fc_siam_diff; BIT=1 adds bit_r18), SEEDS (0 1 2), ITERS (400 per member),
#   STUDENT_ITERS (ITERS), SIZE (512), PAIRS (5000: 100 val, 1000 test at full size), BATCH (8),
#   VAL_EVERY (ITERS / 2), MARGIN (0.02), LAMBDA (unset: the grid; a value: that λ alone),
#   TEACHERS (2 3), AUTO (1; 0 skips op --teachers auto), JOBS (1: seeds run one after another;
#   each seed is a process with its own device and buffer pool, TinyCD's training step alone ~16 GB
#   at 8 × 512²: JOBS=3 fitted an H200's 141 GB and ran out of memory on an 80 GB H100 in
#   session 18, where 2 fit),
#   EXP (/tmp/cd-evidence: data and checkpoints, kept between calls),
#   TEACHER_INIT (scratch, the paper's; original: teachers start from M_O's weights, in folders
#   fixed-tK-mo-init and auto-mo-init that share the scratch runs' M_O where it exists).
set -uo pipefail
out=${1:-bench-out}; mkdir -p "$out"
models=${MODELS:-tinycd fc_siam_diff}; [ -n "${BIT:-}" ] && models="$models bit_r18"
seeds=${SEEDS:-0 1 2}; iters=${ITERS:-400}; sit=${STUDENT_ITERS:-$iters}; size=${SIZE:-512}
pairs=${PAIRS:-5000}; batch=${BATCH:-8}; every=${VAL_EVERY:-$(( iters > 1 ? iters / 2 : 1 ))}
margin=${MARGIN:-0.02}; teachers=${TEACHERS:-2 3}; exp=${EXP:-/tmp/cd-evidence}
init=${TEACHER_INIT:-scratch}; sfx=""; [ "$init" = original ] && sfx="-mo-init"
case "$init" in scratch|original) ;; *) echo "TEACHER_INIT must be scratch or original" >&2; exit 2;; esac
val=$(( pairs * 2 / 100 > 4 ? pairs * 2 / 100 : 4 )); test=$(( pairs / 5 > 4 ? pairs / 5 : 4 ))
[ "$pairs" -ge 5000 ] && { val=100; test=1000; }
if [ -n "${LAMBDA:-}" ]; then lam=(--lambda "$LAMBDA"); else lam=(--lambda-grid); fi
export NO_COLOR=1
run() { # run LOG CMD…: the command's output to LOG, its status and time on the console
  local log=$1; shift; local t0=$SECONDS
  "$@" > "$log" 2>&1; local rc=$?
  echo "${log#"$exp"/}: exit $rc, $((SECONDS - t0)) s"
  [ $rc = 0 ] || tail -5 "$log"
  return $rc
}
# The summary and the members' logs and results go to OUT at any exit, also when a time limit
# (timeout, the device's) stops the run part-way: what finished is not lost.
killtree() { # a background seed and every process under it (its deno members)
  local c; for c in $(pgrep -P "$1"); do killtree "$c"; done; kill "$1" 2>/dev/null
}
finish() {
  trap - EXIT
  for j in $(jobs -p); do killtree "$j"; done
  deno run -A bench/evidence_summary.ts "$exp" --margin "$margin" > "$out/SUMMARY.md" 2>&1
  cat "$out/SUMMARY.md"
  tar czf "$out/evidence.tgz" -C "$exp" --exclude='*.safetensors' --exclude='checkpoints' \
    --exclude='*.html' --exclude='*.svg' --exclude=data $models 2>/dev/null # reports embed images: over 16 MiB
}
trap finish EXIT
trap 'exit 143' TERM INT
mkdir -p "$exp"
[ -d "$exp/data/train" ] || run "$exp/synth.log" deno run -A cli/synth.ts --out "$exp/data" \
  --pairs "$pairs" --size "$size" --val "$val" --test "$test" --seed 0 --quiet || exit 1
first=${teachers%% *}
trained() { [ -d "$1" ] && [ ! -L "$1" ] && [ -f "$1/member.json" ]; } # a member trained here
one_seed() { # one_seed MODEL SEED: every member of one model and seed
  local model=$1 seed=$2 base auto mo d t budget scheme
  base="$exp/$model/s$seed"; auto="$base/auto$sfx"; mkdir -p "$auto"
  budget=(--model "$model" --data "$exp/data" --batch "$batch" --size "$size" --seed "$seed"
    --val-every "$every")
  # M_O: one trained member per seed, whichever setting (of this call or an earlier one, with
  # other TEACHERS) trained it; else this setting's first run trains it.
  mo="fixed-t$first$sfx"
  for d in "fixed-t$first" fixed-t2 fixed-t3 "fixed-t2$sfx" "fixed-t3$sfx"; do
    trained "$base/$d/original" && { mo=$d; break; }
  done
  for t in $teachers; do # fixed thresholds: the paper's (3: 0.05 / 0.2, 2: 0.10)
    d="$base/fixed-t$t$sfx"; mkdir -p "$d"
    [ "$mo" != "fixed-t$t$sfx" ] && [ ! -e "$d/original" ] && ln -sfn "../$mo/original" "$d/original"
    run "$d/op.log" deno run -A cli/op.ts "${budget[@]}" --iters "$iters" --out "$d" \
      --teachers "$t" --route-margin "$margin" --teacher-init "$init" &&
      cp "$d/results.json" "$d/op_results.json"
  done
  # Thresholds from the data; M_O shared with the fixed runs (AUTO=0 skips: 10 teachers).
  if [ "${AUTO:-1}" = 1 ]; then
    ln -sfn "../$mo/original" "$auto/original"
    run "$auto/op.log" deno run -A cli/op.ts "${budget[@]}" --iters "$iters" \
      --out "$auto" --teachers auto --route-margin "$margin" --teacher-init "$init"
  fi
  for t in $teachers; do
    [ -f "$auto/k$t/results.json" ] && cp "$auto/k$t/results.json" "$auto/k$t/op_results.json"
  done
  # MTKD (λ on validation) and the λ = 0 control, hard targets. The control has no teacher and
  # every setting of a seed shares M_O, so it is one member: the first setting trains it, the
  # others link to it and distill reuses it (its run key matches: same start, data and λ).
  local control="" c
  for c in "$base"/fixed-t*/student_0 "$auto"/k*/student_0; do
    trained "$c" && { control=$c; break; }
  done
  for t in $teachers; do
    for d in "$base/fixed-t$t$sfx" "$auto/k$t"; do
      [ -f "$d/op_results.json" ] || continue
      scheme=(--teachers "$t"); [[ $d == */auto*/k* ]] && scheme+=(--auto)
      [ -n "$control" ] && [ ! -e "$d/student_0" ] &&
        ln -sfn "$(realpath --relative-to="$d" "$control")" "$d/student_0"
      run "$d/distill.log" deno run -A cli/distill.ts "${budget[@]}" --iters "$sit" \
        --from "$d" "${scheme[@]}" "${lam[@]}" --control &&
        [ -z "$control" ] && control="$d/student_0"
    done
  done
}
# JOBS seeds at once on the one GPU (default 1): each member is one process with its own device,
# and a member leaves the GPU idle while it loads data and evaluates, which another seed can use.
jobs_max=${JOBS:-1}
for model in $models; do
  for seed in $seeds; do
    one_seed "$model" "$seed" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
  done
done
wait
