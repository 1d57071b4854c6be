// A trained checkpoint for inference (predict, eval): which model it is (--model, else the name
// the file's metadata records) and the model built with it loaded strictly. Errors name the
// file and the flag to change; a checkpoint of another architecture has its key lists cut short.

import { loadCheckpoint } from "../engine/nn/checkpoint.ts";
import { initDevice } from "../engine/device.ts";
import { readFormulaManifest, readFormulaWeights } from "../engine/formula_weights.ts";
import { loadInto } from "../engine/safetensors.ts";
import { statOrNull } from "../data/pair_folder.ts";
import type { ChangeDetector } from "../models/model.ts";
import { type ModelEntry, modelEntry, MODELS } from "../models/registry.ts";

/** The model name a safetensors checkpoint records (metadata "model"), or undefined. Reads only
 * the header. */
export async function checkpointModel(path: string): Promise<string | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${path}: weights file not found (--weights)`);
    }
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const read = async (n: number) => {
      const buf = new Uint8Array(n);
      let got = 0;
      while (got < n) {
        const k = await file.read(buf.subarray(got));
        if (k === null) break;
        got += k;
      }
      return buf.subarray(0, got);
    };
    const head = await read(8);
    if (head.length < 8) return undefined; // loading it names the problem
    const len = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (len <= 0 || len > 100_000_000) return undefined;
    const meta = JSON.parse(new TextDecoder().decode(await read(len)))?.__metadata__;
    return typeof meta?.model === "string" ? meta.model : undefined;
  } catch {
    return undefined; // not safetensors: loading the checkpoint says so, naming the file
  } finally {
    file.close();
  }
}

/** --model if given, else the checkpoint's (or formula manifest's) recorded model; one of the
 * registry's names. */
export async function resolveModelName(flag: string | undefined, weights: string, formula = false) {
  const recorded = formula
    ? (await readFormulaManifest(weights)).model
    : await checkpointModel(weights);
  const name = flag ?? recorded;
  if (name === undefined) {
    throw new Error(
      `${weights}: the checkpoint does not record its model; pass --model NAME ` +
        `(${Object.keys(MODELS).join(", ")})`,
    );
  }
  if (!MODELS[name]) {
    throw new Error(
      `${weights}: records model "${name}", which this version does not know; ` +
        `pass --model NAME (${Object.keys(MODELS).join(", ")})`,
    );
  }
  return name;
}

/** The registry entry and its model with the checkpoint loaded (strict keys, same model); with
 * `formula`, `weights` is a formula manifest whose weights are generated (engine/formula_weights.ts). */
export async function loadTrainedModel(
  name: string,
  weights: string,
  formula = false,
): Promise<{ entry: ModelEntry; model: ChangeDetector }> {
  const entry = modelEntry(name);
  if (formula) return { entry, model: await loadFormulaModel(entry, weights) };
  const st = await statOrNull(weights);
  if (!st) throw new Error(`${weights}: weights file not found (--weights)`);
  if (!st.isFile) throw new Error(`${weights}: not a file (--weights takes a .safetensors file)`);
  await initDevice();
  const model = entry.create(0);
  try {
    loadCheckpoint(model, weights, { strict: true, expectModel: name });
  } catch (e) {
    model.dispose();
    const msg = shortenLists((e as Error).message);
    throw new Error(msg.includes(weights) ? msg : `${weights}: ${msg}`);
  }
  return { entry, model: model.eval() };
}

async function loadFormulaModel(entry: ModelEntry, manifest: string): Promise<ChangeDetector> {
  const entries = await readFormulaWeights(manifest);
  if (entries.metadata.model !== entry.name) {
    throw new Error(
      `${manifest}: the manifest defines model "${entries.metadata.model}", not "${entry.name}": ` +
        `pass --model ${entries.metadata.model} or the manifest of a ${entry.name} model`,
    );
  }
  await initDevice();
  const model = entry.create(0);
  try {
    loadInto(model.stateDict(), entries, { strict: true, name: manifest });
  } catch (e) {
    model.dispose();
    throw new Error(shortenLists((e as Error).message));
  }
  return model.eval();
}

/** A checkpoint of another architecture lists hundreds of keys; keep the first few per line. */
function shortenLists(message: string, width = 300): string {
  return message.split("\n").map((line) => {
    if (line.length <= width) return line;
    // A closing remark in parentheses (loadCheckpoint's hint) survives the cut.
    const remark = / \([^()]*\)$/.exec(line)?.[0] ?? "";
    const items = line.slice(0, line.length - remark.length).split(", ");
    let kept = items[0];
    let k = 1;
    while (k < items.length && kept.length + items[k].length + 2 < width) kept += `, ${items[k++]}`;
    return k < items.length ? `${kept}, … (${items.length - k} more)${remark}` : line;
  }).join("\n");
}

/** A command's weights flags: a checkpoint, or a formula manifest (exactly one). */
export interface WeightsFlags {
  weights?: string;
  weightsFormula?: string;
}

/** The path the weights flags name, and whether it is a formula manifest. */
export function weightsSource(f: WeightsFlags): { path: string; formula: boolean } {
  if ((f.weights === undefined) === (f.weightsFormula === undefined)) {
    throw new Error("give one of --weights FILE and --weights-formula MANIFEST");
  }
  return f.weights !== undefined
    ? { path: f.weights, formula: false }
    : { path: f.weightsFormula!, formula: true };
}
