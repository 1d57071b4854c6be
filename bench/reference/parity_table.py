"""Training-parity table (issue 22): reads the logs bench/gpu_train_parity.sh writes into one
folder (engine_log_MODEL_SEED.jsonl: the trainer's log.jsonl; torch_log_MODEL_SEED.jsonl:
train_synth.py's output) and prints one markdown table: per model, the best and the final
validation mIoU as mean ± sample std over seeds, engine against PyTorch, the difference of the
final means, and whether the engine's mean final lies within max(1 std of PyTorch's finals,
1 point) of PyTorch's mean final; also the last logged training loss of each. Python standard
library only.
Usage: python3 bench/reference/parity_table.py DIR [--models a,b,c]"""
import glob, json, os, re, statistics, sys

NAME = re.compile(r"^(engine|torch)_log_(.+)_(\d+)\.jsonl$")


def read_log(path):
    """([(step, mIoU)] of the validation lines, the last training line's mean loss or None);
    malformed lines are skipped."""
    out, loss = [], None
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if not isinstance(r, dict):
                continue
            if r.get("type") == "val" and "mIoU" in r:
                out.append((int(r["step"]), float(r["mIoU"])))
            elif r.get("type") == "train" and "loss" in r:
                loss = float(r["loss"])
    return out, loss


def collect(folder):
    """{model: {impl: {seed: (best, final, last step, last train loss)}}} of every log with
    validation lines."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "*_log_*.jsonl"))):
        m = NAME.match(os.path.basename(path))
        if not m:
            continue
        impl, model, seed = m.group(1), m.group(2), int(m.group(3))
        curve, loss = read_log(path)
        if curve:
            runs.setdefault(model, {}).setdefault(impl, {})[seed] = (
                max(v for _, v in curve), curve[-1][1], curve[-1][0], loss)
    return runs


def mean_std(xs):
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(ms, digits=1):
    m, s = ms
    return "–" if m is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def table(runs, models=None):
    lines = ["| model | seeds (engine / PyTorch) | best: engine | best: PyTorch | final: engine | "
             "final: PyTorch | Δ final | within max(1 std, 1 pt) | last train loss: engine / PyTorch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model in models or sorted(runs):
        r = runs.get(model, {})
        eng, tor = r.get("engine", {}), r.get("torch", {})
        steps = {v[2] for v in list(eng.values()) + list(tor.values())}
        eb, ef = mean_std([v[0] for v in eng.values()]), mean_std([v[1] for v in eng.values()])
        tb, tf = mean_std([v[0] for v in tor.values()]), mean_std([v[1] for v in tor.values()])
        if ef[0] is None or tf[0] is None:
            delta, ok = "–", "no data"
        else:
            d = ef[0] - tf[0]
            tol = max(tf[1], 1.0)
            delta, ok = f"{d:+.1f}", ("yes" if abs(d) <= tol else "no") + f" (±{tol:.1f})"
        if len(steps) > 1:
            ok += f"; runs end at different steps {sorted(steps)}"
        el = mean_std([v[3] for v in eng.values() if v[3] is not None])
        tl = mean_std([v[3] for v in tor.values() if v[3] is not None])
        lines.append(f"| {model} | {len(eng)} / {len(tor)} | {fmt(eb)} | {fmt(tb)} | {fmt(ef)} | "
                     f"{fmt(tf)} | {delta} | {ok} | {fmt(el, 3)} / {fmt(tl, 3)} |")
    return "\n".join(lines)


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if args else 2)
    models = None
    if "--models" in args:
        i = args.index("--models")
        models = [m for m in args[i + 1].replace(",", " ").split() if m]
        del args[i:i + 2]
    runs = collect(args[0])
    if not runs:
        sys.exit(f"{args[0]}: no engine_log_*/torch_log_* files with validation lines")
    print(table(runs, models))
    print("\nvalidation mIoU (%), mean ± sample std over seeds; best: highest validation of a run; "
          "final: its last validation; last train loss: the mean of a run's last logged interval")


if __name__ == "__main__":
    main()
