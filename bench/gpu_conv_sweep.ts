// bench/gpu_conv.ts --sweep: alternative tiles of the GEMM kernels, split and packed variants,
// Winograd channel tiles, matmul tiles for 1×1 convs and strip widths of the direct kernels,
// each checked and timed, the fastest printed per case (how the pickers of kernels/conv_plan.ts,
// conv2d_gemm_plan.ts and conv2d_wgrad.ts were tuned).

import { run } from "../engine/launch.ts";
import {
  convWeightGradRaw,
  packWeights,
  runCol2im,
  runImplicitGemm,
  runWinograd,
  winogradWeightGradRaw,
} from "../engine/ops/conv2d_launch.ts";
import { small1x1WeightGradRaw } from "../engine/ops/conv1x1_small.ts";
import { gemm } from "../engine/ops/matmul.ts";
import { empty, type Tensor, view } from "../engine/tensor.ts";
import { type ConvGeometry, NO_EPILOGUE } from "../kernels/conv2d.ts";
import { directConvKernel } from "../kernels/conv2d_direct.ts";
import { implicitGemmKernel, tapMajorFits } from "../kernels/conv2d_gemm.ts";
import {
  dgradGemmSpecs,
  forwardGemmSpec,
  GEMM_TILES,
  type GemmTile,
} from "../kernels/conv2d_gemm_plan.ts";
import {
  pickSplits,
  splitReduceKernel,
  wgradColumns,
  wgradGemmKernel,
  type WgradTile,
} from "../kernels/conv2d_wgrad.ts";
import {
  dgradWinogradSpec,
  forwardWinogradSpec,
  type WinogradSpec,
} from "../kernels/conv2d_winograd.ts";
import {
  dgradIsDirect,
  forwardIsDirect,
  matmul1x1Fits,
  smallWgradFits,
  wgradIsDirect,
  winogradFits,
  winogradFitsDgrad,
} from "../kernels/conv_plan.ts";
import { TILE_LARGE, type TileConfig } from "../kernels/matmul.ts";
import { measure, type Sampler } from "./gpu_conv_measure.ts";

// The picker's own tiles plus the ones it no longer picks, to keep checking them.
const SWEEP_TILES: Record<string, GemmTile> = {
  ...GEMM_TILES,
  t32: { tm: 32, tn: 128, tk: 8, rm: 4, rn: 4 },
  t64s: { tm: 64, tn: 128, tk: 8, rm: 4, rn: 8 },
  t64n64: { tm: 64, tn: 64, tk: 16, rm: 8, rn: 4 },
  t128: { tm: 128, tn: 128, tk: 8, rm: 8, rn: 8 },
  t128k16: { tm: 128, tn: 128, tk: 16, rm: 8, rn: 8 },
  t64r88k8: { tm: 64, tn: 128, tk: 8, rm: 8, rn: 8 },
};

/** Matmul tiles for 1×1 convs: planMatmul's candidates, and each with 8-deep slabs. */
const MATMUL_SWEEP_TILES: TileConfig[] = [
  [128, 128, 8, 8],
  [64, 64, 4, 4],
  [64, 128, 4, 8],
  [128, 64, 8, 4],
  [32, 128, 4, 4],
  [128, 32, 4, 4],
  [32, 32, 4, 4],
  [16, 64, 4, 4],
  [64, 16, 4, 4],
].flatMap(([bm, bn, tm, tn]) => [16, 8].map((bk) => ({ ...TILE_LARGE, bm, bn, tm, tn, bk })));

const WGRAD_TILES: Record<string, WgradTile> = {
  w8x16: { tm: 8, tk: 16, tp: 16, rm: 2, rk: 4 },
  w16x32: { tm: 16, tk: 32, tp: 16, rm: 2, rk: 4 },
  w16x64: { tm: 16, tk: 64, tp: 16, rm: 4, rk: 4 },
  w32x32: { tm: 32, tk: 32, tp: 16, rm: 4, rk: 4 },
  w32x64: { tm: 32, tk: 64, tp: 16, rm: 4, rk: 8 },
  w64x64: { tm: 64, tk: 64, tp: 16, rm: 4, rk: 8 },
  w64x64p32: { tm: 64, tk: 64, tp: 32, rm: 8, rk: 8 },
  w64x128: { tm: 64, tk: 128, tp: 16, rm: 8, rk: 8 },
};

/** Tiles worth trying for a GEMM with `mg` rows: none much taller than needed. */
function gemmCandidates(mg: number): [string, GemmTile][] {
  return Object.entries(SWEEP_TILES).filter(([, t]) => t.tm <= Math.max(16, 2 * mg));
}

interface SweepRow {
  key: string;
  op: string;
  variant: string;
  ms: number;
  err: number;
}
export const sweepRows: SweepRow[] = [];

export async function sweep(
  key: string,
  op: string,
  variants: [string, () => Tensor][],
  check: Sampler,
): Promise<void> {
  for (const [variant, launch] of variants) {
    try {
      const r = await measure(launch, check);
      sweepRows.push({ key, op, variant, ...r });
    } catch (e) {
      console.log(`  ${key} ${op} ${variant}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  const mine = sweepRows.filter((r) => r.key === key && r.op === op);
  const best = mine.reduce((a, b) => (b.ms < a.ms ? b : a), mine[0]);
  if (best) {
    console.log(
      `  sweep ${key} ${op}: ${
        mine.map((r) => `${r.variant} ${r.ms.toFixed(3)}`).join(", ")
      } → best ${best.variant}`,
    );
  }
}

export function forwardVariants(g: ConvGeometry, x: Tensor, w: Tensor): [string, () => Tensor][] {
  const out = () => empty([g.batch, g.co, g.ho, g.wo]);
  if (forwardIsDirect(g)) {
    return [2, 4, 8].map((rw) => [`rw${rw}`, () => {
      const y = out();
      run(directConvKernel({ mode: "forward", geom: g, epilogue: NO_EPILOGUE, rw }), [x, w], [y]);
      return y;
    }]);
  }
  if (matmul1x1Fits(g)) {
    // The matmul op's forward with each tile (mm<bm>x<bn>k<bk>).
    const hw = g.h * g.w;
    return MATMUL_SWEEP_TILES.map((tile) => [`mm${tile.bm}x${tile.bn}k${tile.bk}`, () => {
      return gemm(view(w, [g.co, g.ci]), view(x, [g.batch, g.ci, hw]), { tile });
    }]);
  }
  const gemms: [string, () => Tensor][] = gemmCandidates(g.co / g.groups).map((
    [name, tile],
  ) => [name, () => {
    const y = out();
    run(implicitGemmKernel(forwardGemmSpec(g, NO_EPILOGUE, tile)), [x, w], [y]);
    return y;
  }]);
  // Split reductions ("/sN") on the tiles that win most often.
  for (const [name, tile] of gemmCandidates(g.co / g.groups)) {
    const split = ["t64w", "t64", "t32w", "t32r8", "t64wk16", "t64r8", "t64r88k8", "t16", "t16w"];
    if (!split.includes(name)) continue;
    for (const splits of [2, 3, 4]) {
      const spec = { ...forwardGemmSpec(g, NO_EPILOGUE, tile), splits };
      gemms.push([`${name}/s${splits}`, () => {
        const y = out();
        runImplicitGemm(spec, x, w, [], [y]);
        return y;
      }]);
    }
    // Packed weights ("/p"), unsplit and split.
    for (const splits of [1, 2, 3, 4]) {
      const spec = { ...forwardGemmSpec(g, NO_EPILOGUE, tile), splits, packedWeights: true };
      if (!tapMajorFits(spec)) continue;
      gemms.push([`${name}${splits > 1 ? `/s${splits}` : ""}/p`, () => {
        const y = out();
        runImplicitGemm(spec, x, w, [], [y]);
        return y;
      }]);
    }
  }
  if (!winogradFits(g)) return gemms;
  return [...winogradVariants(forwardWinogradSpec(g, NO_EPILOGUE), x, w, false), ...gemms];
}

/** The Winograd kernel with each channel tile (weight transform included). */
function winogradVariants(
  base: WinogradSpec,
  x: Tensor,
  w: Tensor,
  flip: boolean,
): [string, () => Tensor][] {
  return [16, 32].map((tm) => [`wino${tm}`, () => {
    const y = empty([base.batch, base.m, base.outH, base.outW]);
    runWinograd({ ...base, tm }, x, w, flip, [], [y]);
    return y;
  }]);
}

export function dgradVariants(g: ConvGeometry, dy: Tensor, w: Tensor): [string, () => Tensor][] {
  const out = () => empty([g.batch, g.ci, g.h, g.w]);
  if (dgradIsDirect(g)) {
    return [2, 4, 8].map((rw) => [`rw${rw}`, () => {
      const y = out();
      run(directConvKernel({ mode: "dgrad", geom: g, epilogue: NO_EPILOGUE, rw }), [dy, w], [y]);
      return y;
    }]);
  }
  const gemms: [string, () => Tensor][] = gemmCandidates(g.ci / g.groups).map((
    [name, tile],
  ) => [name, () => {
    const y = out();
    for (const s of dgradGemmSpecs(g, NO_EPILOGUE, tile)) {
      if (s.ny > 0 && s.nx > 0) run(implicitGemmKernel(s), [dy, w], [y]);
    }
    return y;
  }]);
  // Packed weights ("/p") for the phases that walk tap-major.
  for (const [name, tile] of gemmCandidates(g.ci / g.groups)) {
    const specs = dgradGemmSpecs(g, NO_EPILOGUE, tile).filter((s) => s.ny > 0 && s.nx > 0)
      .map((s) => ({ ...s, packedWeights: tapMajorFits(s) }));
    if (!specs.some((s) => s.packedWeights)) continue;
    gemms.push([`${name}/p`, () => {
      const y = out();
      for (const s of specs) {
        const wp = s.packedWeights ? packWeights(s, w) : w;
        run(implicitGemmKernel(s), [dy, wp], [y]);
        if (wp !== w) wp.dispose();
      }
      return y;
    }]);
  }
  if (g.groups === 1 && (g.strideY > 1 || g.strideX > 1) && g.kh * g.kw > 1) {
    gemms.unshift(["col2im", () => {
      const y = out();
      runCol2im(g, dy, w, NO_EPILOGUE, [], [y]);
      return y;
    }]);
  }
  if (!winogradFitsDgrad(g)) return gemms;
  return [...winogradVariants(dgradWinogradSpec(g, NO_EPILOGUE), dy, w, true), ...gemms];
}

export function wgradVariants(g: ConvGeometry, x: Tensor, dy: Tensor): [string, () => Tensor][] {
  if (wgradIsDirect(g)) return [];
  const mg = g.co / g.groups, cols = wgradColumns(g, false);
  const variants: [string, () => Tensor][] = [[
    "pick",
    () => convWeightGradRaw(g, x, dy, false).dw,
  ]];
  if (winogradFits(g)) variants.push(["wino4", () => winogradWeightGradRaw(g, x, dy)]);
  if (smallWgradFits(g)) variants.push(["small", () => small1x1WeightGradRaw(g, x, dy, false).dw]);
  for (const [name, tile] of Object.entries(WGRAD_TILES)) {
    if (tile.tm > Math.max(8, 2 * mg) || tile.tk > Math.max(16, 2 * cols)) continue;
    for (const target of [512, 2048]) {
      variants.push([`${name}/${target}`, () => {
        const tiles = Math.ceil(cols / tile.tk) * Math.ceil(mg / tile.tm) * g.groups;
        const sp = pickSplits(tiles * (1024 / target), g.batch * g.ho * g.wo, tile.tp);
        const dw = empty([g.co, g.ci / g.groups, g.kh, g.kw]);
        const part = sp.splits === 1 ? dw : empty([sp.splits, g.co, cols]);
        run(
          wgradGemmKernel({ geom: g, bias: false, splits: sp.splits, chunk: sp.chunk, tile }),
          [x, dy],
          [part],
        );
        if (part !== dw) {
          run(splitReduceKernel({ splits: sp.splits, co: g.co, cols, bias: false }), [part], [dw]);
        }
        return dw;
      }]);
    }
  }
  return variants;
}
