// deno task train --model NAME --data ROOT --out RUN_DIR [--config FILE] [flags]
// The command's page: help and flags; train/run_config.ts merges them with --config and the
// resumed run's settings, train/trainer.ts trains.

import { z } from "zod";
import { type TrainConfig, TrainConfigSchema } from "../train/config.ts";
import { resolveTrainConfig } from "../train/run_config.ts";
import { train } from "../train/trainer.ts";
import { runCommand } from "./run.ts";

const HELP = `Train a change-detection model.

Usage:
  deno task train --model NAME --data ROOT --out RUN_DIR [--config FILE] [flags]
  deno task train --resume RUN_DIR

ROOT holds {train,val,test}/{A,B,label}/*.png (labels 0/255); without val/, the first
--val-count training pairs (sorted by name) are the validation set, as in JL1-CD. The whole
folder is checked first (progress on stderr, then a summary: pairs per split, notes such as
ignored alpha, a warning under 10 validation pairs); every bad file is listed. Extensions are
read in any case (.PNG) and symbolic links followed; an empty test/ is skipped.
RUN_DIR receives config.json (the settings as trained; size is the crop used), log.jsonl (every
logged step and validation), and at each validation one committed checkpoint: checkpoints/step_N/
(weights, optimiser state) named by checkpoint.json, with best.safetensors (best validation mIoU)
and last.safetensors beside them. A crash or Ctrl-C at any point keeps the last checkpoint whole;
Ctrl-C stops after the current step and prints the resume command. --resume continues bit-exactly
(the log loses the steps after the checkpoint) and refuses settings that differ from the run's,
naming them.

Every key of a --config JSON file can also be given as a flag; flags win.
  --model NAME           registry name (deno task models)
  --data ROOT            dataset root
  --out RUN_DIR          run folder
  --config FILE          JSON with any of the keys below (camelCase)
  --iters N              training iterations (default 2000)
  --batch B              pairs per step (default 8, or the model's recipe: 16 for
                         changestar_farseg_r18, as Table II)
  --lr X                 initial LR (default: the model's recipe)
  --weight-decay X       AdamW weight decay (default: recipe)
  --warmup N             linear warm-up steps from 1e-6 (default 10 % of iters, at most 1000)
  --schedule linear|cosine   decay after warm-up (default linear, to 0)
  --seed K               seed of initialisation, data order and augmentation (default 0)
  --size S               training crop (default 512)
  --val-every N          validate and checkpoint every N steps (default 1000)
  --log-every N          log the mean loss every N steps (default 20)
  --val-count N          validation pairs taken from train when ROOT has no val/ (default 100;
                         at least 1)
  --no-augment           no rotation/flip/photometric augmentation
  --workers W            PNG decode workers
  --init FILE            start from these weights
  --pretrained FILE      load an ImageNet backbone (safetensors, mmseg names such as MiT-b0's
                         or ResNetV1c-18's, with or without "backbone.") into backbone.* first;
                         any key, missing tensor or shape that does not fit is an error naming it
  --pretrained-skip P,Q  leave out file keys under these prefixes (e.g. layer4,fc)
  --resume RUN_DIR       continue a run exactly where its last checkpoint left it (a run that
                         died before its first checkpoint starts again from step 0)
  --keep-checkpoints     also keep iter_N.safetensors at each validation
`;

const Flags = TrainConfigSchema.partial().extend({ config: z.string().optional() });

runCommand(import.meta, { help: HELP, flags: Flags }, async (flags, given) => {
  const { config, ...rest } = flags as Partial<TrainConfig> & { config?: string };
  const result = await train(await resolveTrainConfig(rest, given, config));
  console.log(
    `done: ${result.lastStep} steps in ${result.runDir}` +
      (result.best
        ? `; best val mIoU ${result.best.mIoU.toFixed(2)} at step ${result.best.step}`
        : ""),
  );
});
