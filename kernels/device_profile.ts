// What the kernel planners need to know about the GPU, as data instead of one card's constants:
// how many workgroups fill it (conv GEMM tiles and reduction splits, kernels/conv_plan.ts), how
// many threads keep it busy (planMatmul in kernels/matmul.ts), and from how many channels the
// GEMM + pixel-shuffle form of a kernel = stride transposed conv pays for its extra pass.
// WebGPU exposes no SM count, so a hardware adapter gets the profile the planners were tuned
// on (H100/H200 sweeps, 132 SMs) and a software (CPU) adapter one sized by its cores;
// engine/device.ts picks it when the device starts. Planners take a profile argument, so a test
// can ask what any device would run (tests/engine/conv_routes_test.ts).

export interface DeviceProfile {
  name: string;
  /** Workgroups a conv GEMM launch should reach; fewer leave the GPU partly idle, so tiles
   * shrink and reductions split until a launch has this many. */
  fillWorkgroups: number;
  /** Threads that keep the GPU busy (planMatmul's fill estimate). */
  busyThreads: number;
  /** Channels (both ways) from which a kernel = stride transposed conv runs as GEMMs + pixel
   * shuffles (engine/ops/conv_transpose2d.ts): the shuffle's extra pass over the output must be
   * hidden by the GEMMs' 2·C flops per element, a flops-to-bandwidth question. */
  shuffleMinChannels: number;
  /** planMatmul splits a long reduction only when a launch's threads fill less than this share
   * of busyThreads (0.5, what every measured plan used). bench/results/matmul_rates_h100_s15.md
   * suggested 1 for mid-size products; measured on an H200 it changes no model's step by more
   * than 1 % (planner_ab_h200_s17.md); gpu_train_step.ts --matmul-split-below compares. */
  matmulSplitBelowFill: number;
  /** planMatmul charges a launch that fills `fill` < 1 of the GPU work / fill^this. 1 (linear)
   * is what every measured plan used; matmul_rates_h100_s15.md found part-full 128×128 launches
   * faster than linear says (256×384×8192 × 36 at fill 0.82 ran at 36.6 TFLOP/s, 64×64 tiles of
   * the same products at 25), but 0.3 left every model within ±2 % on an H200
   * (bench/results/planner_ab_h200_s17.md); gpu_train_step.ts --matmul-fill-exp compares. */
  matmulFillExponent: number;
  /** Convs with no more channels than this each way take the fused Winograd F(4×4) kernel
   * (kernels/conv2d_winograd4_fused.ts) for the forward and both gradients. 0: never; on an H200
   * they halve the FC models' bytes and cost 13–15 % more step time at 64 channels, 30 % at 128
   * (bench/results/planner_ab_h200_s17.md). gpu_train_step.ts --fused-wino4-max compares. */
  fusedWino4MaxChannels: number;
  /** Patch convs' input gradients, and so kernel = stride transposed convs that the shuffle
   * route does not take, with no more channels than this each way run one thread per dy pixel
   * and channel block (kernels/conv2d_tap_expand.ts) instead of phase GEMMs. 32 on an H100:
   * SNUNet's 32-channel up-convs (1.08 ms each forward on the phase GEMMs, ~0.1 ms of bytes)
   * made its step 0.97× and inference 0.91× the phase GEMMs' (bench/results/
   * planner_ab_h100_s19.md); gpu_train_step.ts --tap-expand-max compares. */
  tapExpandMaxChannels: number;
  /** planMatmul may also pick 16×16, 16×32 and 32×16 tiles: Winograd weight gradients of
   * 16-channel convs (16×16 outputs over 131,072 tiles × 36 at 512²) run on 32×32 tiles that are
   * three quarters padding, 0.53 ms each on an H100 against ~0.2 ms of bytes (session 18
   * profile). Off: on an H100 it changed SNUNet's step by 0.99× and FC-Siam-Diff's by 1.00×
   * (bench/results/planner_ab_h100_s19.md); gpu_train_step.ts --matmul-small-tiles compares. */
  matmulSmallTiles: boolean;
  /** The Winograd GEMM routes (forward, input and weight gradients) may take F(6×6, 3×3) where
   * its tiles fit the output (kernels/conv_plan.ts winograd6Pays): 21 % fewer products and
   * transformed elements than F(4×4) at 512², twice its rounding error. Off: on an H100 it made
   * FC-Siam-Diff's step 1.04× and SNUNet-c16's 1.08× (its forward and input gradient are slower
   * per layer, its weight gradient faster at 512²; bench/results/planner_ab_h100_s20.md);
   * gpu_train_step.ts --winograd6 compares. */
  winograd6: boolean;
}

/** NVIDIA H100 / H200 (132 SMs): every threshold the planners were tuned with. */
export const H100_PROFILE: DeviceProfile = Object.freeze({
  name: "h100",
  // About twice the 132 SMs' worth of 512-thread workgroups.
  fillWorkgroups: 256,
  busyThreads: 132 * 512,
  // bench/results/conv_h200.txt: SNUNet's 256-channel up-convs win, its 32-channel ones lose.
  shuffleMinChannels: 64,
  matmulSplitBelowFill: 0.5,
  matmulFillExponent: 1,
  fusedWino4MaxChannels: 0,
  tapExpandMaxChannels: 32,
  matmulSmallTiles: false,
  winograd6: false,
});

/** A software adapter (Mesa llvmpipe/lavapipe, SwiftShader): workgroups run a few at a time on
 * the CPU's cores, so a few per core already "fill" it; more workgroups or split reductions only
 * add partial sums to write and read back. */
export function softwareProfile(cores: number): DeviceProfile {
  const c = Math.max(1, cores);
  return Object.freeze({
    name: `software-${c}`,
    fillWorkgroups: 4 * c,
    busyThreads: 4 * c * 256,
    shuffleMinChannels: 64,
    matmulSplitBelowFill: 0.5,
    matmulFillExponent: 1,
    fusedWino4MaxChannels: 0,
    tapExpandMaxChannels: 0,
    matmulSmallTiles: false,
    winograd6: false,
  });
}

/** Adapter descriptions of CPU (software) drivers. */
export const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|softpipe|warp/i;

/** The profile for an adapter: software drivers by their description (or WebGPU's fallback
 * flag), every hardware adapter the H100 one (the only GPU the planners were measured on). */
export function profileForAdapter(
  a: { description: string; isFallback: boolean },
  cores: number,
): DeviceProfile {
  return a.isFallback || SOFTWARE_ADAPTER.test(a.description)
    ? softwareProfile(cores)
    : H100_PROFILE;
}

let active: DeviceProfile = H100_PROFILE;

/** The profile of the device in use (H100_PROFILE until engine/device.ts sets one). */
export function activeProfile(): DeviceProfile {
  return active;
}

export function setActiveProfile(p: DeviceProfile): void {
  active = p;
}

/** Run fn with another profile active (tests reaching a route on small shapes). */
export function withProfile<T>(p: DeviceProfile, fn: () => T): T {
  const prev = active;
  active = p;
  try {
    const r = fn();
    if (r instanceof Promise) {
      return r.finally(() => (active = prev)) as T;
    }
    active = prev;
    return r;
  } catch (e) {
    active = prev;
    throw e;
  }
}
