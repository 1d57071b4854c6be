// Issue 16: the layers' arrows point down only (cli → train → models → engine → kernels) and no
// module imports itself through others. Every import of every .ts file under the six source
// folders is read from its text; `data/` stands beside the column: docs/ARCHITECTURE.md allows
// train/ and cli/ to use it, and it to call the engine, nothing else. Arrows count every import,
// type-only ones too; cycles count the imports that load a module (`import type` / `export type`
// ones are erased, so they cannot make one module run before another has finished loading).

import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { AugmentOptions } from "../../data/augment.ts";
import type { OpenCdAugment } from "../../models/registry.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FOLDERS = ["cli", "train", "data", "models", "engine", "kernels"] as const;
type Layer = typeof FOLDERS[number];
/** Height in the column; data/ is handled apart. */
const RANK: Record<Exclude<Layer, "data">, number> = {
  cli: 4,
  train: 3,
  models: 2,
  engine: 1,
  kernels: 0,
};

/** Every .ts file under `dir`, relative to the repository root. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(join(ROOT, dir))) {
    const path = join(dir, e.name);
    if (e.isDirectory) out.push(...sources(path));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** Relative specifiers of static imports and re-exports and of dynamic imports with a literal
 * path; comments are dropped first. `typeOnly: false` leaves out `import type` and
 * `export type` statements. */
export function importsOf(text: string, typeOnly = true): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const specs = new Set<string>();
  const patterns = [
    /\b(?:import|export)\s([^;]*?)\sfrom\s*["']([^"']+)["']/g,
    /\bimport\s*()["']([^"']+)["']/g,
    /\bimport\(\s*()["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) {
    for (const m of code.matchAll(re)) if (typeOnly || !/^\s*type\s/.test(m[1])) specs.add(m[2]);
  }
  return [...specs].filter((s) => s.startsWith("."));
}

/** The file's layer, or null outside the six folders. */
function layerOf(path: string): Layer | null {
  const top = path.split(/[\\/]/)[0];
  return (FOLDERS as readonly string[]).includes(top) ? top as Layer : null;
}

/** Whether an import from layer `from` into layer `to` is allowed. */
export function allowed(from: Layer, to: Layer | null): boolean {
  if (to === null) return false; // tests/, bench/, mod.ts: nothing below may use them
  if (from === to) return true;
  if (to === "data") return from === "train" || from === "cli";
  if (from === "data") return to === "engine";
  return RANK[from] > RANK[to];
}

/** Each import cycle once, as the files along it (the first repeated at the end). */
export function cyclesOf(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const visit = (n: string) => {
    state.set(n, "open");
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === "open") {
        const cycle = [...stack.slice(stack.indexOf(m)), m];
        const key = [...cycle.slice(0, -1)].sort().join(" ");
        if (!seen.has(key)) cycles.push(cycle);
        seen.add(key);
      } else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

function importGraph(typeOnly: boolean): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of FOLDERS.flatMap(sources).sort()) {
    const text = Deno.readTextFileSync(join(ROOT, file));
    const specs = importsOf(text, typeOnly);
    graph.set(file, specs.map((s) => relative(".", normalize(join(dirname(file), s)))));
  }
  return graph;
}

Deno.test("layers: no import points up the column or sideways into data/", () => {
  const graph = importGraph(true);
  assert.ok(graph.size > 100, `only ${graph.size} files found under ${ROOT}`);
  const bad: string[] = [];
  for (const [file, targets] of graph) {
    for (const t of targets) {
      if (!allowed(layerOf(file)!, layerOf(t))) bad.push(`${file} → ${t}`);
    }
  }
  assert.deepStrictEqual(bad, [], `upward or sideways imports:\n${bad.join("\n")}`);
});

Deno.test("layers: no import cycle among the source files", () => {
  const cycles = cyclesOf(importGraph(false)).map((c) => c.join(" → "));
  assert.deepStrictEqual(cycles, [], `import cycles:\n${cycles.join("\n")}`);
});

Deno.test("layers: the checks themselves catch what they look for", () => {
  assert.deepStrictEqual(
    importsOf(
      `import { a } from "./a.ts";\nimport type {\n  B,\n} from "../m/b.ts";\n` +
        `export { c } from "./c.ts";\nimport "./d.ts";\nconst e = await import("./e.ts");\n` +
        `// import { f } from "./f.ts";\nimport { z } from "zod";\n`,
    ),
    ["./a.ts", "../m/b.ts", "./c.ts", "./d.ts", "./e.ts"],
  );
  const mixed = `import type { A } from "./a.ts";\nexport type { B } from "./b.ts";\n` +
    `import { type C, d } from "./c.ts";\nimport { typed } from "./t.ts";\n`;
  assert.deepStrictEqual(importsOf(mixed), ["./a.ts", "./b.ts", "./c.ts", "./t.ts"]);
  assert.deepStrictEqual(importsOf(mixed, false), ["./c.ts", "./t.ts"]);
  assert.equal(allowed("models", "data"), false);
  assert.equal(allowed("engine", "models"), false);
  assert.equal(allowed("data", "train"), false);
  assert.equal(allowed("kernels", "engine"), false);
  assert.equal(allowed("cli", "kernels"), true);
  assert.equal(allowed("data", "engine"), true);
  assert.equal(allowed("train", "data"), true);
  assert.equal(allowed("engine", null), false);
  const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a", "d"]], ["d", []]]);
  assert.deepStrictEqual(cyclesOf(g), [["a", "b", "c", "a"]]);
  assert.deepStrictEqual(cyclesOf(new Map([["a", ["b"]], ["b", []]])), []);
});

// models/registry.ts declares the recipe's Open-CD transforms itself (it may not import data/);
// this line stops type-checking if a name or type drifts from data/augment.ts's options.
const _sameNames: Pick<AugmentOptions, keyof OpenCdAugment> = {} as OpenCdAugment;
