// One markdown table from the JSON rows that bench/reference/train_step.py and
// bench/gpu_train_step.ts print (bench/gpu_table2.sh's step.jsonl): per model, train step,
// inference and peak memory of ours beside PyTorch eager and, where measured, torch.compile,
// with our time as a multiple of each. Lines that are not JSON rows are skipped; a model
// measured twice keeps its last row per implementation.
//   deno run -A bench/step_table.ts OUT/step.jsonl > OUT/TABLE.md

interface Row {
  model: string;
  impl: string;
  train_ms: number;
  infer_ms: number;
  peak_gb?: number;
  peak_pool_gb?: number;
  device?: string;
}

export function parseRows(text: string): Row[] {
  const rows: Row[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t.startsWith("{")) continue;
    try {
      const r = JSON.parse(t);
      if (typeof r.model === "string" && typeof r.impl === "string") rows.push(r);
    } catch {
      // a console line that starts with a brace: not a row
    }
  }
  return rows;
}

const IMPLS = { ours: "cd-engine", eager: "pytorch", compile: "pytorch-compile" } as const;

export function stepTable(rows: Row[]): string {
  const by = new Map<string, Map<string, Row>>();
  for (const r of rows) {
    const m = by.get(r.model) ?? new Map<string, Row>();
    m.set(r.impl, r);
    by.set(r.model, m);
  }
  const ms = (r: Row | undefined, k: "train_ms" | "infer_ms") => r ? r[k].toFixed(1) : "–";
  const gb = (r: Row | undefined) => {
    const v = r?.peak_pool_gb ?? r?.peak_gb;
    return v === undefined ? "–" : v.toFixed(2);
  };
  const ratio = (a: Row | undefined, b: Row | undefined) =>
    a && b ? (a.train_ms / b.train_ms).toFixed(2) : "–";
  const devices = new Set(rows.map((r) => r.device).filter(Boolean));
  const out = [
    `Device: ${[...devices].join(", ") || "not reported"}. Times in ms, peaks in GB; ours ÷ X is ` +
    "our train step over X's.",
    "",
    "| model | train step: ours / eager / compile | ours ÷ eager | ours ÷ compile | " +
    "inference: ours / eager / compile | peak: ours / eager / compile |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const [model, m] of by) {
    const [o, e, c] = [m.get(IMPLS.ours), m.get(IMPLS.eager), m.get(IMPLS.compile)];
    out.push(
      `| ${model} | ${ms(o, "train_ms")} / ${ms(e, "train_ms")} / ${ms(c, "train_ms")} | ` +
        `${ratio(o, e)} | ${ratio(o, c)} | ${ms(o, "infer_ms")} / ${ms(e, "infer_ms")} / ` +
        `${ms(c, "infer_ms")} | ${gb(o)} / ${gb(e)} / ${gb(c)} |`,
    );
  }
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  const [file] = Deno.args;
  if (!file) {
    console.error("usage: step_table.ts STEP_JSONL");
    Deno.exit(2);
  }
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (e) {
    console.error(`step_table: cannot read ${file}: ${(e as Error).message}`);
    Deno.exit(2);
  }
  console.log(stepTable(parseRows(text)));
}
