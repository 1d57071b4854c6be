// Direct convolution for few output channels per group (depthwise, the grouped "mixing" conv
// with groups = Co, and convs to 1–4 channels): one thread per output channel and strip of
// `rw` neighbouring outputs along x. Taps are unrolled; each input row segment is loaded once
// into registers and reused by every output of the strip and every tap that touches it.
// The same generator gives the gradient w.r.t. the input (a transposed conv), where strips are
// aligned to the stride so that which taps reach which output is known at compile time.

import { cached, grid1d, type Kernel, kernel, main1d } from "./common.ts";
import { convBindings, type ConvGeometry, type Epilogue, epilogueStore } from "./conv2d.ts";

export interface DirectConvSpec {
  mode: "forward" | "dgrad";
  geom: ConvGeometry;
  epilogue: Epilogue;
  /** Outputs per thread along x (dgrad: rounded up to a multiple of the stride). */
  rw?: number;
}

function floorDiv(a: number, b: number): number {
  return Math.floor(a / b);
}

function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

function directConvKernelGen(s: DirectConvSpec): Kernel {
  const g = s.geom;
  const fwd = s.mode === "forward";
  const taps = g.kh * g.kw;
  // Output tensor, input tensor, reduction channels per output channel.
  const [oc, oh, ow] = fwd ? [g.co, g.ho, g.wo] : [g.ci, g.h, g.w];
  const [ic, ih, iw] = fwd ? [g.ci, g.h, g.w] : [g.co, g.ho, g.wo];
  const cig = g.ci / g.groups, cog = g.co / g.groups;
  const red = fwd ? cig : cog;
  // Strided forward convs: 2 outputs per thread (H200 sweep of TinyCD's depthwise layers:
  // dw192 k5 s2 0.094 ms against 0.125 with 4, dw144 k3 s2 0.115 against 0.161).
  let rw = s.rw ?? (fwd && g.strideX > 1 ? 2 : 4);
  if (!fwd) rw = Math.ceil(rw / g.strideX) * g.strideX;
  const ns = Math.ceil(ow / rw);
  const items = g.batch * oc * oh * ns;
  const grid = grid1d(items);

  // (output j, tap kx) → offset from the strip's input base, or null when the tap misses.
  const offset = (j: number, kx: number): number | null => {
    if (fwd) return j * g.strideX + kx * g.dilX;
    const num = j + g.padX - kx * g.dilX;
    return mod(num, g.strideX) === 0 ? floorDiv(num, g.strideX) : null;
  };
  const used = new Set<number>();
  for (let j = 0; j < rw; j++) {
    for (let kx = 0; kx < g.kw; kx++) {
      const o = offset(j, kx);
      if (o !== null) used.add(o);
    }
  }
  const offs = [...used].sort((a, b) => a - b);
  const oMin = offs[0] ?? 0, oMax = offs.at(-1) ?? 0;
  const vn = (o: number) => `v${o < 0 ? "m" + -o : o}`;
  const plus = (o: number) => (o === 0 ? "" : o > 0 ? ` + ${o}` : ` - ${-o}`);

  const fmas: string[] = [];
  for (let kx = 0; kx < g.kw; kx++) {
    for (let j = 0; j < rw; j++) {
      const o = offset(j, kx);
      if (o !== null) fmas.push(`acc${j} = fma(w_\${ky}_${kx}, ${vn(o)}, acc${j});`);
    }
  }
  const rowBody = (ky: number) => {
    const wl = Array.from(
      { length: g.kw },
      (_, kx) => `let w_${ky}_${kx} = wt[wb + ${ky * g.kw + kx}u];`,
    );
    const fast = offs.map((o) => `let ${vn(o)} = inp[u32(row + xb${plus(o)})];`);
    const slow = offs.map((o) =>
      `let ${vn(o)} = select(0.0, inp[u32(row + clamp(xb${plus(o)}, 0, ${iw - 1}))], ` +
      `u32(xb${plus(o)}) < ${iw}u);`
    );
    const f = fmas.map((l) => l.replaceAll("${ky}", String(ky))).join("\n        ");
    const rowExpr = fwd
      ? `let iy = oy * ${g.strideY} - ${g.padY} + ${ky * g.dilY};
      if (u32(iy) < ${ih}u) {
        let row = cb + iy * ${iw};`
      : `let num = oy${plus(g.padY - ky * g.dilY)};
      let iy = num / ${g.strideY};
      if (num >= 0 && ${g.strideY === 1 ? "true" : `num % ${g.strideY} == 0`} && iy < ${ih}) {
        let row = cb + iy * ${iw};`;
    return `{
      ${rowExpr}
        ${wl.join("\n        ")}
        if (inside) {
        ${fast.join("\n        ")}
        ${f}
        } else {
        ${slow.join("\n        ")}
        ${f}
        }
      }
    }`;
  };
  const rows = Array.from({ length: g.kh }, (_, ky) => rowBody(ky)).join("\n    ");

  // Channel bookkeeping: input channel base and weight base for reduction index r.
  const chanSetup = fwd
    ? `let inC0 = (c / ${cog}u) * ${cig}u;
  let wBase = c * ${cig * taps}u;
  let wStride = ${taps}u;`
    : `let gi = c / ${cig}u;
  let inC0 = gi * ${cog}u;
  let wBase = gi * ${cog * cig * taps}u + (c % ${cig}u) * ${taps}u;
  let wStride = ${cig * taps}u;`;
  const xbExpr = fwd ? `i32(s * ${rw * g.strideX}u) - ${g.padX}` : `i32(s * ${rw / g.strideX}u)`;

  const stores = Array.from(
    { length: rw },
    (_, j) =>
      `if (x0 + ${j}u < ${ow}u) { ${epilogueStore(s.epilogue, `acc${j}`, "c", `ob + ${j}u`)} }`,
  ).join("\n  ");

  const body = `${main1d(grid.index, items)}
  let s = i % ${ns}u;
  let t = i / ${ns}u;
  let oy = i32(t % ${oh}u);
  let t2 = t / ${oh}u;
  let c = t2 % ${oc}u;
  let b = t2 / ${oc}u;
  ${chanSetup}
  let xb = ${xbExpr};
  let inside = xb${plus(oMin)} >= 0 && xb${plus(oMax)} < ${iw};
  ${Array.from({ length: rw }, (_, j) => `var acc${j} = 0.0;`).join("\n  ")}
  for (var r = 0u; r < ${red}u; r++) {
    let cb = i32((b * ${ic}u + inC0 + r) * ${ih * iw}u);
    let wb = wBase + r * wStride;
    ${rows}
  }
  let x0 = s * ${rw}u;
  let ob = ((b * ${oc}u + c) * ${oh}u + u32(oy)) * ${ow}u + x0;
  ${stores}
}`;
  const name = fwd ? "conv2d_direct" : "conv2d_dgrad_direct";
  return kernel(name, convBindings(s.epilogue, "inp"), grid.workgroups, body);
}

// Generated once per distinct spec (see cached in common.ts).
export const directConvKernel = cached(directConvKernelGen);
