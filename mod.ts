// Public API of cd-engine: the engine (tensors, autograd, ops, nn, optimiser, checkpoints), the
// change-detection models and registry, the data layer, and the trainer with the JL1-CD method.

export { deviceInfo, initDevice } from "./engine/device.ts";
export { empty, full, ones, parameter, Tensor, tensor, zeros } from "./engine/tensor.ts";
export { scope, scopeAsync } from "./engine/scope.ts";
export { backward, noGrad } from "./engine/autograd.ts";
export { flush, sync } from "./engine/recorder.ts";
export { pool } from "./engine/pool.ts";
export * from "./engine/ops/elementwise.ts";
export { max, mean, sum, sumTo } from "./engine/ops/reduce.ts";
export { reshape } from "./engine/ops/shape.ts";
export { gemm, matmul } from "./engine/ops/matmul.ts";
export { logSoftmax, softmax } from "./engine/ops/softmax.ts";
export { attention } from "./engine/ops/attention.ts";
export { conv2d, foldBatchNorm } from "./engine/ops/conv2d.ts";
export { convTranspose2d } from "./engine/ops/conv_transpose2d.ts";
export { batchNorm2d, instanceNorm2d } from "./engine/ops/norm.ts";
export { layerNorm, layerNorm2d } from "./engine/ops/layer_norm.ts";
export { erf, gelu, hardSigmoid, leakyRelu, prelu, silu } from "./engine/ops/activation.ts";
export { dropout, dropout2d } from "./engine/ops/dropout.ts";
export { adaptiveAvgPool2d, adaptiveMaxPool2d, avgPool2d, maxPool2d } from "./engine/ops/pool.ts";
export { interpolate } from "./engine/ops/resample.ts";
export { gridSample } from "./engine/ops/grid_sample.ts";
export { exchange } from "./engine/ops/exchange.ts";
export {
  absDiff,
  concat,
  flip,
  interleaveChannels,
  pad2d,
  permute,
  rot90,
  slice,
  transpose,
} from "./engine/ops/layout.ts";
export { cdLoss } from "./engine/ops/cd_loss.ts";
export { confusion } from "./engine/ops/confusion.ts";
export { augmentBatch } from "./engine/ops/augment.ts";
export { AdamW } from "./engine/optim/adamw.ts";
export { ParamArena } from "./engine/arena.ts";
export { loadInto, readSafetensors, saveTensors, writeSafetensors } from "./engine/safetensors.ts";
export { Module, ModuleList, Sequential } from "./engine/nn/module.ts";
export { Conv2d, ConvTranspose2d } from "./engine/nn/conv.ts";
export { BatchNorm2d, InstanceNorm2d, LayerNorm } from "./engine/nn/norm.ts";
export { GELU, PReLU, ReLU, Sigmoid, SiLU, Tanh } from "./engine/nn/activation.ts";
export { Linear } from "./engine/nn/linear.ts";
export { Dropout, Dropout2d } from "./engine/nn/dropout.ts";
export { loadCheckpoint, saveCheckpoint } from "./engine/nn/checkpoint.ts";
export { countMacs } from "./engine/profiler.ts";
export { Random } from "./engine/random.ts";

export type { ChangeDetector, Tap } from "./models/model.ts";
export { BIT, createBit } from "./models/bit.ts";
export { ChangeFormer, createChangeFormer } from "./models/changeformer.ts";
export { ChangerEx, createChangerEx } from "./models/changer.ts";
export { MIT_B0, MixVisionTransformer } from "./models/mit.ts";
export { ResNet } from "./models/resnet.ts";
export { measureMacs, modelEntry, MODELS } from "./models/registry.ts";

export { checkDataset, checkSplit, openDataset, openSplit } from "./data/dataset.ts";
export { openLoader } from "./data/loader.ts";
export { buildManifest, partitionOf, THREE_TEACHERS, TWO_TEACHERS } from "./data/partition.ts";
export { carOf } from "./data/car.ts";
export { writeSynthDataset } from "./data/synth.ts";

export { train } from "./train/trainer.ts";
export { TrainConfigSchema } from "./train/config.ts";
export { evaluateModel } from "./train/evaluate.ts";
export { evaluate } from "./train/metrics.ts";
export { predictProbability } from "./train/predict.ts";
export { runOp } from "./train/op.ts";
export { LAMBDA_GRID, runDistill } from "./train/distill.ts";
export { runExperiment } from "./train/experiment.ts";
