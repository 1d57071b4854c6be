// The training loop: data from the checked dataset, GPU augmentation, forward, the fused
// CE (+ λ·KD) loss, backward and one fused AdamW dispatch per step, all recorded and submitted
// together; the loss is summed on the GPU and read back only every `logEvery` steps.
// Checkpoints: every `valEvery` steps one committed unit (train/checkpoint_set.ts) of weights,
// optimiser state and run state, with best by validation mIoU; a crash at any point of a save
// leaves the previous checkpoint whole. Resume continues the same run: weights, optimiser state,
// schedule position, data order, augmentation and dropout draws all follow from (seed, step);
// the log loses the steps after the checkpoint, and a run hash (train/run_key.ts) refuses a
// resume with other settings. Ctrl-C stops after the current step and names the resume command.
// The model's recipe may add Open-CD training options: per-parameter LR / weight-decay groups
// (paramwise), the OHEM loss and extra augmentation; --pretrained loads an ImageNet backbone.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { accumulate, backward, noGrad } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { loadCheckpoint, saveCheckpoint } from "../engine/nn/checkpoint.ts";
import { resetDropoutStream } from "../engine/nn/dropout.ts";
import { AUG_PARAMS, augmentBatch } from "../engine/ops/augment.ts";
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
import {
  commitCheckpoint,
  committedState,
  POINTER,
  prepareResume,
  type RunState,
  truncateLog,
} from "./checkpoint_set.ts";
import { evalWindow, type TrainConfig } from "./config.ts";
import { evaluateModel } from "./evaluate.ts";
import { trainingLoss } from "./loss.ts";
import { loadPretrained } from "./pretrained.ts";
import { checkReporter, datasetSummary, Progress } from "./progress.ts";
import { runConfig, runKey, settingDiffs } from "./run_key.ts";
import { defaultWarmup, lrAt } from "./schedule.ts";

/** Teacher logits for a batch (MTKD): called under noGrad with the augmented inputs. */
export type TeacherFn = (a: Tensor, b: Tensor, batch: Batch) => Tensor;

export interface TrainHooks {
  /** Train on these pairs instead of the dataset's train split (O-P teachers). */
  trainPairs?: PairInfo[];
  /** Distillation: λ and the per-batch teacher logits; `kdMargin` (soft targets near the
   * partition thresholds) only enters the run key, the teacher function applies it. */
  distill?: { lambda: number; teacher: TeacherFn; kdMargin?: number };
  /** A checked dataset to reuse (skips checking the folder again). */
  dataset?: CheckedDataset;
  /** Label shown in progress lines. */
  label?: string;
  quiet?: boolean;
  /** Stop after this step as if interrupted (the run can be resumed; tests). */
  stopAt?: number;
}

/** Ctrl-C stopped the run; the last committed checkpoint is kept. */
export class TrainingInterrupted extends Error {
  constructor(readonly runDir: string, readonly step: number, readonly committed: number | null) {
    super(
      `interrupted at step ${step}; ` +
        (committed === null
          ? `no checkpoint was saved yet: deno task train --resume ${runDir} starts it again`
          : `the last checkpoint (step ${committed}) is kept: continue with ` +
            `deno task train --resume ${runDir}`),
    );
  }
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
    ...checkReporter(cfg.data, say),
  });
  if (!hooks.dataset) datasetSummary(ds).forEach(say);
  const trainPairs = hooks.trainPairs ?? ds.train;
  if (trainPairs.length === 0) throw new Error(`${cfg.data}: no training pairs`);
  const minSide = Math.min(...trainPairs.map((p) => Math.min(p.width, p.height)));
  if (cfg.size > minSide) {
    say(
      `--size ${cfg.size} exceeds the smallest training image (${minSide} px): crops are ${minSide}`,
    );
  }
  // The crop used, not the one asked for, is the run's size (config.json, validation window).
  cfg = runConfig(cfg, trainPairs);
  const size = cfg.size;
  const configHash = await runKey({
    cfg,
    trainPairs,
    valPairs: ds.val,
    lambda: hooks.distill?.lambda,
    kdMargin: hooks.distill?.kdMargin,
  });

  let state: RunState = { step: 0, best: null, configHash };
  if (!cfg.resume) refuseUsedFolder(runDir);
  const resumed = cfg.resume ? prepareResume(runDir) : null;
  if (resumed) checkSameRun(runDir, resumed.state, cfg, configHash);
  if (cfg.resume && !resumed) say(`${runDir}: no checkpoint was saved yet; starting from step 0`);
  const model = entry.create(cfg.seed);
  if (!resumed) {
    // Starting weights first: a bad --pretrained or --init stops the run before anything is
    // written. A resumed run's weights come from its checkpoint.
    try {
      initialWeights(model, entry, cfg);
    } catch (e) {
      model.dispose();
      throw e;
    }
    Deno.mkdirSync(runDir, { recursive: true });
    const { resume: _, ...saved } = cfg;
    Deno.writeTextFileSync(join(runDir, "config.json"), JSON.stringify(saved, null, 2) + "\n");
  } else {
    state = { ...resumed.state, configHash: resumed.state.configHash ?? configHash };
  }
  // Steps logged after the checkpoint were lost with the crash: they run again.
  if (cfg.resume) truncateLog(log, state.step);
  const lr = cfg.lr ?? entry.recipe.lr;
  const opt = new AdamW(trainableParameters(model, entry), {
    lr,
    betas: entry.recipe.betas,
    weightDecay: cfg.weightDecay ?? entry.recipe.weightDecay,
    multipliers: recipeMultipliers(model, entry),
  });
  if (resumed) {
    loadCheckpoint(model, resumed.model, { expectModel: entry.name });
    const s = opt.state();
    // Checkpoints from before per-parameter step counts lack skipped_steps: none skipped.
    loadInto(s, resumed.optim, { optional: AdamW.optionalState });
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
  const sigint = onSigint(() => say("Ctrl-C: stopping after this step (again: quit at once)"));
  progress.begin();
  try {
    while (state.step < Math.min(cfg.iters, hooks.stopAt ?? Infinity) && !sigint.seen) {
      const batch = (await loader.nextBatch())!;
      const step = state.step;
      scope(() =>
        trainStep(model, entry, opt, batch, cfg, hooks, step, lrAt(sched, step), lossSum)
      );
      state.step++;
      sinceLog++;
      progress.tick(state.step);
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
        await saveRun(model, opt, entry, runDir, state, cfg.keepCheckpoints);
      }
    }
  } finally {
    sigint.remove();
    loader.close();
    progress.done();
    lossSum.kept = false;
    lossSum.dispose();
  }
  opt.dispose();
  opt.arena.dispose();
  if (sigint.seen) {
    throw new TrainingInterrupted(runDir, state.step, committedState(runDir)?.step ?? null);
  }
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
  // λ = 0 (the control) needs no teacher: its loss is CE alone, the same as with the teacher.
  const teacher = hooks.distill?.lambda
    ? noGrad(() => hooks.distill!.teacher(a, b, batch))
    : undefined;
  const logits = model.forward(a, b);
  const loss = trainingLoss(model, logits, label, {
    distill: teacher && { lambda: hooks.distill!.lambda, teacher },
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

/** The parameters the optimiser steps: all but the recipe's frozen ones, which upstream's
 * AdamW skips (their gradient stays None: no moments, no update, no weight decay). Leaving them
 * out also keeps IFN's parameter arena (frozen VGG encoder) within a software adapter's
 * 128 MiB storage binding. */
export function trainableParameters(model: ChangeDetector, entry: ModelEntry): Tensor[] {
  return trainableNamed(model, entry).map(([, t]) => t);
}

function trainableNamed(model: ChangeDetector, entry: ModelEntry): [string, Tensor][] {
  const frozen = entry.recipe.frozen ?? [];
  return model.namedParameters().filter(([n]) => !frozen.some((f) => n.startsWith(f)));
}

/** Per-parameter LR / weight-decay multipliers of the recipe's paramwise custom keys, for
 * trainableParameters in order. */
export function recipeMultipliers(
  model: ChangeDetector,
  entry: ModelEntry,
): { lrMult: number; decayMult: number }[] | undefined {
  const pw = entry.recipe.paramwise;
  if (!pw) return undefined;
  return paramMultipliers(trainableNamed(model, entry).map(([n]) => n), pw.customKeys);
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
  keepIter: boolean,
): Promise<void> {
  const info = { model: entry.name, step: String(state.step), config_hash: state.configHash };
  await commitCheckpoint(runDir, { ...state }, {
    model: (path) => saveCheckpoint(model, path, info),
    optim: async (path) => {
      const optState = opt.state();
      await saveTensors(path, optState, { step: String(state.step) });
      for (const t of Object.values(optState)) if (!t.kept) t.dispose();
    },
  }, { keepIter });
}

/** A fresh run may not reuse a folder that holds one: its checkpoints, or a run that stopped
 * before its first checkpoint (config.json), would be overwritten and its log appended to. */
function refuseUsedFolder(runDir: string): void {
  const has = (f: string) => existsSync(join(runDir, f));
  if (has(POINTER) || has("state.json") || has("last.safetensors")) {
    throw new Error(
      `${runDir} already holds a run: pass --resume ${runDir} to continue it, or choose another --out`,
    );
  }
  if (has("config.json") || has("log.jsonl")) {
    throw new Error(
      `${runDir} holds a run that stopped before its first checkpoint: pass --resume ${runDir} ` +
        `to start it again from step 0 with its config.json, or choose another --out`,
    );
  }
}

/** A resumed run must be asked for with the settings, data and starting weights it began with. */
function checkSameRun(runDir: string, saved: RunState, cfg: TrainConfig, hash: string): void {
  if (!saved.configHash || saved.configHash === hash) return;
  let diffs: string[] = [];
  try {
    diffs = settingDiffs(JSON.parse(Deno.readTextFileSync(join(runDir, "config.json"))), cfg);
  } catch { /* no readable config.json: the generic reason below */ }
  throw new Error(
    `${runDir} was trained with other settings than this call asks for (` +
      (diffs.length ? diffs.join(", ") : "its training data, pairs or starting weights differ") +
      `): resume it with its own settings (deno task train --resume ${runDir} and no other ` +
      `flags), or start a new run in another folder`,
  );
}

/** Ctrl-C sets a flag the loop reads between steps; a second Ctrl-C quits at once (a save is
 * one committed unit, so even that keeps the last checkpoint). */
function onSigint(note: () => void): { readonly seen: boolean; remove: () => void } {
  const s = { seen: false, remove: () => {} };
  const handler = () => {
    if (s.seen) Deno.exit(130);
    s.seen = true;
    note();
  };
  try {
    Deno.addSignalListener("SIGINT", handler);
    s.remove = () => Deno.removeSignalListener("SIGINT", handler);
  } catch { /* no signals here (e.g. a platform without SIGINT): Ctrl-C kills as before */ }
  return s;
}

function resumeDir(path: string): string {
  const dir = path.endsWith(".safetensors") ? join(path, "..") : path;
  if (!existsSync(join(dir, "config.json")) && !committedState(dir)) {
    throw new Error(
      `${path}: not a run folder (no config.json or ${POINTER}); pass the folder deno task train --out wrote`,
    );
  }
  return dir;
}
