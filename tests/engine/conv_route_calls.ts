// Every convolution a registered model's training step asks for, found by a dry forward (no
// kernel runs; engine/profiler.ts) and traced by the conv ops (engine/conv_trace.ts). The dry
// run is at batch 1 (or the model's minBatch) and the geometry's batch is scaled afterwards: routes depend on the batch
// only through g.batch, and a batch-8 run would allocate the whole step's activations.

import { countMacs } from "../../engine/profiler.ts";
import { type ConvCall, traceConvs } from "../../engine/conv_trace.ts";
import { scope } from "../../engine/scope.ts";
import { zeros } from "../../engine/tensor.ts";
import { MODELS } from "../../models/registry.ts";

/** The conv calls of `model`'s training forward at batch × size², in call order. */
export function modelConvCalls(model: string, batch = 8, size = 512): ConvCall[] {
  const m = MODELS[model].create(0);
  const mb = MODELS[model].minBatch ?? 1; // a training BatchNorm may need two images
  m.train(true);
  const calls = scope(() =>
    traceConvs(() =>
      countMacs(() => {
        m.forward(zeros([mb, 3, size, size]), zeros([mb, 3, size, size]));
      }, { dry: true })
    )
  );
  return calls.map((c) => ({ ...c, g: { ...c.g, batch: (c.g.batch / mb) * batch } }));
}

/** A conv call in one line: op, channels, kernel, stride, padding, dilation, groups, input
 * size, activation and bias. */
export function describeCall(c: ConvCall): string {
  const g = c.g;
  const [ci, co] = c.op === "conv2d" ? [g.ci, g.co] : [g.co, g.ci];
  const [h, w] = c.op === "conv2d" ? [g.h, g.w] : [g.ho, g.wo];
  const geo = `k${g.kh}x${g.kw} s${g.strideY}x${g.strideX} p${g.padY}x${g.padX}` +
    (g.dilY > 1 || g.dilX > 1 ? ` d${g.dilY}x${g.dilX}` : "") +
    (g.groups > 1 ? ` g${g.groups}` : "");
  const op = c.op === "conv2d" ? "conv" : "convT";
  return `${op} ${ci}->${co} ${geo} @${g.batch}x${h}x${w} ${c.activation}${
    c.bias ? (c.biasCancelled ? "+b(cancelled)" : "+b") : ""
  }`;
}

/** The table: per model, each distinct conv call (×count, first-seen order) with its routes. */
export function routeTable(
  models: string[],
  routes: (c: ConvCall) => { forward: string; dgrad: string; wgrad: string },
  batch = 8,
  size = 512,
): string {
  const lines: string[] = [];
  for (const name of models) {
    lines.push(`## ${name} (batch ${batch}, ${size}x${size})`);
    const seen = new Map<string, number>();
    const order: string[] = [];
    for (const c of modelConvCalls(name, batch, size)) {
      const r = routes(c);
      const key = `${describeCall(c)}\n  fwd ${r.forward} | dgrad ${r.dgrad} | wgrad ${r.wgrad}`;
      if (!seen.has(key)) order.push(key);
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    for (const k of order) {
      const n = seen.get(k)!;
      const [head, tail] = k.split("\n");
      lines.push(`${head}${n > 1 ? ` x${n}` : ""}`, tail);
    }
    lines.push("");
  }
  return lines.join("\n");
}
