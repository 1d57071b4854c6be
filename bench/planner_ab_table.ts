// One markdown table from bench/gpu_planner_ab.sh's rows: per model, the train step and inference
// of each planner variant (bench/gpu_train_step.ts rows; a variant is named by the flags its row
// carries: matmul_split_below, fused_wino4_max, matmul_fill_exp, shuffle_min_channels,
// tap_expand_max, matmul_small_tiles, half_inference, winograd6) and each variant's time as a
// multiple of the base.
//   deno run -A bench/planner_ab_table.ts OUT/ab.jsonl > OUT/AB.md

interface Row {
  model: string;
  train_ms: number;
  infer_ms: number;
  matmul_split_below?: number;
  fused_wino4_max?: number;
  matmul_fill_exp?: number;
  shuffle_min_channels?: number;
  tap_expand_max?: number;
  matmul_small_tiles?: boolean;
  half_inference?: boolean;
  winograd6?: boolean;
  device?: string;
}

/** The variant a row ran: "base", or its non-default planner flags. */
export function variantOf(r: Row): string {
  const parts: string[] = [];
  if (r.matmul_split_below !== undefined) parts.push(`split below ${r.matmul_split_below}`);
  if (r.fused_wino4_max !== undefined) parts.push(`fused ≤ ${r.fused_wino4_max}`);
  if (r.matmul_fill_exp !== undefined) parts.push(`fill^${r.matmul_fill_exp}`);
  if (r.shuffle_min_channels !== undefined) parts.push(`shuffle ≥ ${r.shuffle_min_channels}`);
  if (r.tap_expand_max !== undefined) parts.push(`tap-expand ≤ ${r.tap_expand_max}`);
  if (r.matmul_small_tiles) parts.push("small tiles");
  if (r.half_inference) parts.push("f16 Winograd storage (inference)");
  if (r.winograd6) parts.push("F(6×6)");
  return parts.length ? parts.join(" ") : "base";
}

export function abTable(text: string): string {
  const rows: Row[] = text.split("\n").filter((l) => l.trim().startsWith("{")).flatMap((l) => {
    try {
      const r = JSON.parse(l);
      return typeof r.model === "string" && typeof r.train_ms === "number" ? [r] : [];
    } catch {
      return [];
    }
  });
  const variants = [...new Set(rows.map(variantOf))].sort((a, b) =>
    a === "base" ? -1 : b === "base" ? 1 : a.localeCompare(b)
  );
  const models = [...new Set(rows.map((r) => r.model))];
  const at = (m: string, v: string) => rows.findLast((r) => r.model === m && variantOf(r) === v);
  const cell = (r: Row | undefined, base: Row | undefined, k: "train_ms" | "infer_ms") =>
    !r
      ? "–"
      : base && r !== base
      ? `${r[k].toFixed(1)} (${(r[k] / base[k]).toFixed(2)})`
      : r[k].toFixed(1);
  const lines = [
    `Device: ${rows[0]?.device ?? "?"}. Train step / inference in ms (× the base variant's).`,
    "",
    `| model | ${variants.map((v) => `${v}: train`).join(" | ")} | ${
      variants.map((v) => `${v}: inference`).join(" | ")
    } |`,
    `| --- | ${variants.map(() => "---").join(" | ")} | ${variants.map(() => "---").join(" | ")} |`,
  ];
  for (const m of models) {
    const base = at(m, "base");
    lines.push(
      `| ${m} | ${variants.map((v) => cell(at(m, v), base, "train_ms")).join(" | ")} | ${
        variants.map((v) => cell(at(m, v), base, "infer_ms")).join(" | ")
      } |`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  if (Deno.args.length !== 1) {
    console.error("usage: deno run -A bench/planner_ab_table.ts OUT/ab.jsonl");
    Deno.exit(2);
  }
  console.log(abTable(Deno.readTextFileSync(Deno.args[0])));
}
