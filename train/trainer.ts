// The training loop: data from the checked dataset, GPU augmentation, forward, the fused
// CE (+ λ·KD) loss, backward and one fused AdamW dispatch per step, all recorded and submitted
// together; the loss is summed on the GPU and read back only every `logEvery` steps.
// Checkpoints: last (with optimiser state, for --resume) every `valEvery` steps, best by
// validation mIoU. Resume continues the same run: weights, optimiser state, schedule position,
// data order, augmentation and dropout draws all follow from (seed, step).
// The model's recipe may add Open-CD training options: per-parameter LR / weight-decay groups
// (paramwise), the OHEM loss and extra augmentation; --pretrained loads an ImageNet backbone.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { accumulate, backward, noGrad } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { loadCheckpoint, saveCheckpoint } from "../engine/nn/checkpoint.ts";
import { resetDropoutStream } from "../engine/nn/dropout.ts";
import { AUG_PARAMS, augmentBatch } from "../engine/ops/augment.ts";
import { cdLoss } from "../engine/ops/cd_loss.ts";
import { fill, fillInPlace } from "../engine/ops/elementwise.ts";
import { AdamW } from "../engine/optim/adamw.ts";
import { paramMultipliers } from "../engine/optim/param_groups.ts";
import { loadInto, saveTensors } from "../engine/safetensors.ts";
import { scope } from "../engine/scope.ts";
import { type Tensor, tensor } from "../engine/tensor.ts";
import {
  type AugmentOptions,
  augmentParams,
  DEFAULT_AUGMENT,
  NO_AUGMENT,
} from "../data/augment.ts";
import { checkDataset, type CheckedDataset, type PairInfo } from "../data/dataset.ts";
import { type Batch, openLoader } from "../data/loader.ts";
import type { ChangeDetector } from "../models/model.ts";
import { type ModelEntry, modelEntry } from "../models/registry.ts";
import { evalWindow, type TrainConfig } from "./config.ts";
import { evaluateModel } from "./evaluate.ts";
import { loadPretrained } from "./pretrained.ts";
import { Progress } from "./progress.ts";
import { defaultWarmup, lrAt } from "./schedule.ts";

/** Teacher logits for a batch (MTKD): called under noGrad with the augmented inputs. */
export type TeacherFn = (a: Tensor, b: Tensor, batch: Batch) => Tensor;

export interface TrainHooks {
  /** Train on these pairs instead of the dataset's train split (O-P teachers). */
  trainPairs?: PairInfo[];
  /** Distillation: λ and the per-batch teacher logits. */
  distill?: { lambda: number; teacher: TeacherFn };
  /** A checked dataset to reuse (skips checking the folder again). */
  dataset?: CheckedDataset;
  /** Label shown in progress lines. */
  label?: string;
  quiet?: boolean;
  /** Stop after this step as if interrupted (the run can be resumed; tests). */
  stopAt?: number;
}

export interface TrainResult {
  runDir: string;
  best: { step: number; mIoU: number } | null;
  lastStep: number;
  /** Mean training loss of every logged interval. */
  losses: { step: number; loss: number }[];
}

function logLine(path: string, obj: Record<string, unknown>): void {
  Deno.writeTextFileSync(path, JSON.stringify(obj) + "\n", { append: true });
}

interface RunState {
  step: number;
  best: { step: number; mIoU: number } | null;
}

/** Train `cfg.model` on `cfg.data`; see TrainConfig for every option. */
export async function train(cfg: TrainConfig, hooks: TrainHooks = {}): Promise<TrainResult> {
  await initDevice();
  const entry = modelEntry(cfg.model);
  const runDir = cfg.resume ? resumeDir(cfg.resume) : cfg.out;
  const log = join(runDir, "log.jsonl");
  const say = (s: string) => hooks.quiet || console.error(s);
  const ds = hooks.dataset ?? await checkDataset(cfg.data, {
    valCount: cfg.valCount,
    workers: cfg.workers,
    onProgress: (d, t) => !hooks.quiet && d % 500 === 0 && say(`checking ${cfg.data}: ${d}/${t}`),
  });
  const trainPairs = hooks.trainPairs ?? ds.train;
  if (trainPairs.length === 0) throw new Error(`${cfg.data}: no training pairs`);
  const minSide = Math.min(...trainPairs.map((p) => Math.min(p.width, p.height)));
  const size = Math.min(cfg.size, minSide);

  let state: RunState = { step: 0, best: null };
  if (!cfg.resume && existsSync(join(runDir, "last.safetensors"))) {
    throw new Error(
      `${runDir} already holds a run: pass --resume ${runDir} to continue it, or choose another --out`,
    );
  }
  const model = entry.create(cfg.seed);
  if (!cfg.resume) {
    // Starting weights first: a bad --pretrained or --init stops the run before anything is
    // written. A resumed run's weights come from its checkpoint.
    try {
      initialWeights(model, entry, cfg);
    } catch (e) {
      model.dispose();
      throw e;
    }
    Deno.mkdirSync(runDir, { recursive: true });
    Deno.writeTextFileSync(join(runDir, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
  } else {
    state = JSON.parse(Deno.readTextFileSync(join(runDir, "state.json")));
  }
  const lr = cfg.lr ?? entry.recipe.lr;
  const opt = new AdamW(model.parameters(), {
    lr,
    betas: entry.recipe.betas,
    weightDecay: cfg.weightDecay ?? entry.recipe.weightDecay,
    multipliers: recipeMultipliers(model, entry),
  });
  if (cfg.resume) {
    loadCheckpoint(model, join(runDir, "last.safetensors"), { expectModel: entry.name });
    const s = opt.state();
    loadInto(s, join(runDir, "last.optim.safetensors"));
    await opt.loadState(s);
    for (const t of Object.values(s)) if (!t.kept) t.dispose();
  }
  const sched = {
    lr,
    iters: cfg.iters,
    warmup: cfg.warmup ?? defaultWarmup(cfg.iters),
    kind: cfg.schedule,
  };
  const loader = openLoader({
    pairs: trainPairs,
    batchSize: Math.min(cfg.batch, trainPairs.length),
    seed: cfg.seed,
    cropSize: size,
    startStep: state.step,
    workers: cfg.workers,
  });
  const lossSum = fill([], 0).keep();
  const losses: { step: number; loss: number }[] = [];
  const progress = new Progress(cfg.iters, state.step, hooks.label ?? entry.name, hooks.quiet);
  let sinceLog = 0;
  model.train();
  try {
    while (state.step < Math.min(cfg.iters, hooks.stopAt ?? Infinity)) {
      const batch = (await loader.nextBatch())!;
      const step = state.step;
      scope(() =>
        trainStep(model, entry, opt, batch, cfg, hooks, step, lrAt(sched, step), lossSum)
      );
      state.step++;
      sinceLog++;
      const atVal = state.step % cfg.valEvery === 0 || state.step === cfg.iters;
      if (state.step % cfg.logEvery === 0 || atVal) {
        const mean = (await lossSum.item()) / sinceLog;
        fillInPlace(lossSum, 0);
        sinceLog = 0;
        losses.push({ step: state.step, loss: mean });
        logLine(log, {
          type: "train",
          step: state.step,
          loss: mean,
          lr: lrAt(sched, step),
          ...progress.rates(state.step),
        });
        progress.update(state.step, mean);
      }
      if (atVal) {
        model.eval();
        const { report } = await evaluateModel(model, ds.val, evalWindow(cfg));
        model.train();
        const mIoU = report.perImage.mIoU * 100;
        const improved = !state.best || mIoU > state.best.mIoU;
        if (improved) state.best = { step: state.step, mIoU };
        logLine(log, {
          type: "val",
          step: state.step,
          mIoU,
          mFscore: report.perImage.mFscore * 100,
          best: state.best,
        });
        progress.note(`val @${state.step}: mIoU ${mIoU.toFixed(2)}${improved ? " (best)" : ""}`);
        await saveRun(model, opt, entry, runDir, state, improved, cfg.keepCheckpoints);
      }
    }
  } finally {
    loader.close();
    progress.done();
    lossSum.kept = false;
    lossSum.dispose();
  }
  opt.dispose();
  opt.arena.dispose();
  return { runDir, best: state.best, lastStep: state.step, losses };
}

function trainStep(
  model: ChangeDetector,
  entry: ModelEntry,
  opt: AdamW,
  batch: Batch,
  cfg: TrainConfig,
  hooks: TrainHooks,
  step: number,
  lr: number,
  lossSum: Tensor,
): void {
  const n = batch.size, h = batch.height;
  const params = augmentParams(n, cfg.seed, step, augmentOptions(entry, cfg));
  const { a, b, label } = augmentBatch(
    tensor(batch.a, [n, 3, h, batch.width]),
    tensor(batch.b, [n, 3, h, batch.width]),
    tensor(batch.label, [n, h, batch.width], "u32"),
    tensor(params, [n, AUG_PARAMS]),
    entry.normalize,
  );
  resetDropoutStream(cfg.seed, step);
  const teacher = hooks.distill ? noGrad(() => hooks.distill!.teacher(a, b, batch)) : undefined;
  const logits = model.forward(a, b);
  const { loss } = cdLoss(logits, label, {
    lambda: hooks.distill?.lambda ?? 0,
    teacher,
    ohem: entry.recipe.loss?.ohem,
  });
  opt.zeroGrad();
  // Nothing below reads the forward's outputs but the loss: free them as backward goes.
  backward(loss, undefined, { freeActivations: true });
  opt.step(lr);
  accumulate(lossSum, loss);
}

/** --pretrained (backbone) then --init (every weight: with both, as for MTKD students started
 * from an M_O that was itself trained from --pretrained, --init is what the run starts from). */
function initialWeights(model: ChangeDetector, entry: ModelEntry, cfg: TrainConfig): void {
  if (cfg.pretrained) loadPretrained(model, cfg.pretrained, { skip: cfg.pretrainedSkip });
  if (cfg.init) loadCheckpoint(model, cfg.init, { expectModel: entry.name });
}

/** Per-parameter LR / weight-decay multipliers of the recipe's paramwise custom keys. */
export function recipeMultipliers(
  model: ChangeDetector,
  entry: ModelEntry,
): { lrMult: number; decayMult: number }[] | undefined {
  const pw = entry.recipe.paramwise;
  if (!pw) return undefined;
  return paramMultipliers(model.namedParameters().map(([n]) => n), pw.customKeys);
}

/** The default augmentation plus the recipe's Open-CD transforms (none with --no-augment). */
export function augmentOptions(entry: ModelEntry, cfg: TrainConfig): AugmentOptions {
  return cfg.augment ? { ...DEFAULT_AUGMENT, ...entry.recipe.augment } : NO_AUGMENT;
}

async function saveRun(
  model: ChangeDetector,
  opt: AdamW,
  entry: ModelEntry,
  runDir: string,
  state: RunState,
  improved: boolean,
  keepAll: boolean,
): Promise<void> {
  const info = { model: entry.name, step: String(state.step) };
  await saveCheckpoint(model, join(runDir, "last.safetensors"), info);
  const optState = opt.state();
  await saveTensors(join(runDir, "last.optim.safetensors"), optState);
  for (const t of Object.values(optState)) if (!t.kept) t.dispose();
  if (improved) await saveCheckpoint(model, join(runDir, "best.safetensors"), info);
  if (keepAll) await saveCheckpoint(model, join(runDir, `iter_${state.step}.safetensors`), info);
  // state.json last: a run is resumable from the files it names only once they all exist.
  const tmp = join(runDir, "state.json.tmp");
  Deno.writeTextFileSync(tmp, JSON.stringify(state) + "\n");
  Deno.renameSync(tmp, join(runDir, "state.json"));
}

function resumeDir(path: string): string {
  const dir = path.endsWith(".safetensors") ? join(path, "..") : path;
  if (!existsSync(join(dir, "state.json")) || !existsSync(join(dir, "last.optim.safetensors"))) {
    throw new Error(
      `${path}: not a resumable run (needs state.json, last.safetensors and last.optim.safetensors, written at each validation)`,
    );
  }
  return dir;
}
