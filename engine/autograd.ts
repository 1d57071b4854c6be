// Reverse-mode autograd on a tape that the tensors themselves form: each op output holds a
// Node with its inputs and a backward closure. Only leaves that require grad keep `.grad`, and
// a leaf that backward reaches is marked `hasGrad` (what AdamW steps, as PyTorch's skips None).

import { accumulateKernel, fillKernel, mapKernel } from "../kernels/elementwise.ts";
import { run } from "./launch.ts";
import { scope } from "./scope.ts";
import { empty, nextSerial, type Node, type Recompute, type Tensor } from "./tensor.ts";

let enabled = true;

export function isGradEnabled(): boolean {
  return enabled;
}

/** Run fn without recording the tape (inference, optimiser updates, backward itself). */
export function noGrad<T>(fn: () => T): T {
  const prev = enabled;
  enabled = false;
  try {
    return fn();
  } finally {
    enabled = prev;
  }
}

/** Attach a backward rule to `out` when any input needs a gradient, and the op's recipe for
 * writing `out` again (`recompute`: its forward launch, into a given range, from tensors that
 * live until out's backward readers have run: its inputs, statistics it saved), so that an
 * evicted `out` (Tensor.evict) comes back when a backward rule reads it. */
export function record(
  out: Tensor,
  inputs: Tensor[],
  name: string,
  backward: Node["backward"],
  recompute?: Recompute,
): Tensor {
  if (enabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { name, inputs, backward };
    if (recompute) out.storage.recompute = recompute;
  }
  return out;
}

/** Say that `out`'s backward rule never reads `out` (Node.readsOutput: a conv without an
 * activation, a concatenation, a max pooling): with freeActivations, backward lets it go once
 * the rules of the ops it fed have run, before its own. Returns `out`. */
export function ruleIgnoresOutput(out: Tensor): Tensor {
  if (out.node) out.node.readsOutput = false;
  return out;
}

/** dst += src, in place, shapes equal. */
export function accumulate(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size) {
    throw new Error(`gradient of shape [${src.shape}] does not fit [${dst.shape}]`);
  }
  run(accumulateKernel(dst.size), [src], [dst]);
}

/** A kept zero tensor of `t`'s shape, for a leaf's first gradient. */
function zeroGrad(t: Tensor): Tensor {
  const g = empty(t.shape).keep();
  run(fillKernel(g.size, 0), [], [g]);
  return g;
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (seen.has(t)) continue;
    seen.add(t);
    stack.push([t, true]);
    for (const i of t.node?.inputs ?? []) {
      if (i.requiresGrad && !seen.has(i)) stack.push([i, false]);
    }
  }
  return order;
}

export interface BackwardOptions {
  /** Dispose each op output the forward made as soon as every backward rule that may read it
   * (its own op's and those of the ops it fed) has run, as PyTorch frees saved tensors: the
   * graph cannot be walked twice, and those tensors (all but the root and kept ones) must not
   * be read after backward. Tensors an op keeps without recording them (saved statistics,
   * masks) still live until the step's scope ends. Default false. */
  freeActivations?: boolean;
  /** Offer each rule the gradient its inputs have so far (Node.backward's `into`) where nothing
   * else holds it, so rules that can add into it skip a sum pass. Default true; false makes
   * every sum a separate pass (tests compare the two). */
  accumulateInPlace?: boolean;
}

/** Back-propagate from `root` (seeded with `seed`, or ones for a scalar). Gradients add into
 * the `.grad` of every leaf that requires one and that `root` depends on; those leaves get
 * `hasGrad`, the others keep theirs. */
export function backward(root: Tensor, seed?: Tensor, opts: BackwardOptions = {}): void {
  if (!root.requiresGrad) throw new Error("backward() on a tensor that does not require grad");
  if (!seed && root.size !== 1) {
    throw new Error(`backward() of non-scalar ${root.describe()} needs a seed gradient`);
  }
  noGrad(() => {
    // Gradients made here are disposed as soon as nothing pending holds them, as PyTorch
    // frees them, rather than at the end of the step's scope: a step's peak then holds the
    // saved activations and a few gradients, not every gradient too. `held` counts the
    // entries of `grads` that are each tensor (an op may pass one gradient to several inputs).
    const first = nextSerial();
    const grads = new Map<Tensor, Tensor>();
    const held = new Map<Tensor, number>();
    const hold = (x: Tensor) => held.set(x, (held.get(x) ?? 0) + 1);
    const ours = (x: Tensor) => x.serial >= first && !x.kept && !x.disposed;
    const release = (x: Tensor) => {
      const n = (held.get(x) ?? 0) - 1;
      if (n > 0) return void held.set(x, n);
      held.delete(x);
      if (ours(x)) x.dispose();
    };
    const put = (inp: Tensor, x: Tensor) => {
      grads.set(inp, x);
      hold(x);
    };
    if (seed) put(root, seed);
    else {
      const one = empty(root.shape);
      run(fillKernel(1, 1), [], [one]);
      put(root, one);
    }
    const order = topoOrder(root);
    // Backward rules still to run that may read each op output: its own (unless it says it
    // never does: Node.readsOutput) and its consumers'. Every op output but the root has a
    // consumer on the tape, so each is counted at least once.
    const readers = new Map<Tensor, number>();
    if (opts.freeActivations) {
      for (const t of order) {
        if (!t.node) continue;
        if (t.node.readsOutput !== false) readers.set(t, (readers.get(t) ?? 0) + 1);
        for (const i of new Set(t.node.inputs)) {
          if (i.node && i.requiresGrad) readers.set(i, (readers.get(i) ?? 0) + 1);
        }
      }
    }
    const doneReading = (x: Tensor) => {
      const n = (readers.get(x) ?? 0) - 1;
      if (n > 0) return void readers.set(x, n);
      readers.delete(x);
      if (x !== root && x.serial < first && !x.kept && !x.disposed) x.dispose();
    };
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      if (!t.node) {
        t.grad ??= zeroGrad(t);
        accumulate(t.grad, g);
        // Reached from the root (even where g is all zeros): PyTorch's grad is no longer None.
        t.hasGrad = true;
        release(g);
        continue;
      }
      // The rule's temporaries (a pre-activation's gradient, a product before its broadcast
      // sum) go when it returns, not at the step's end: they were a TinyCD step's peak.
      const node = t.node;
      const into = node.inputs.map((inp) => {
        const prev = grads.get(inp);
        // Its own memory, held once, for an input the op takes once: adding into it in place
        // changes nothing that another pending gradient or this rule's reads see.
        return prev && opts.accumulateInPlace !== false && ours(prev) &&
            held.get(prev) === 1 && prev.storage.refs === 1 &&
            node.inputs.indexOf(inp) === node.inputs.lastIndexOf(inp)
          ? prev
          : undefined;
      });
      const inGrads = scope(() => node.backward(g, into));
      const summed: Tensor[] = [];
      t.node.inputs.forEach((inp, j) => {
        const gi = inGrads[j];
        if (!gi || !inp.requiresGrad) return;
        if (gi.size !== inp.size) {
          throw new Error(
            `backward of ${t.node!.name}: gradient [${gi.shape}] for input [${inp.shape}]`,
          );
        }
        const prev = grads.get(inp);
        // Added in place (the rule returned into[j], or a view of it): prev is the sum.
        if (prev && into[j] && gi.storage === prev.storage) {
          if (gi !== prev) gi.dispose();
          return;
        }
        if (!prev) return put(inp, gi);
        put(inp, addFresh(prev, gi));
        release(prev);
        summed.push(gi);
      });
      // Added into a sum and held nowhere else: done with (after the loop, since one tensor
      // may be the gradient of several inputs).
      for (const gi of summed) if (!held.has(gi) && gi !== g && ours(gi)) gi.dispose();
      release(g);
      if (opts.freeActivations) {
        for (const i of new Set(t.node.inputs)) if (readers.has(i)) doneReading(i);
        doneReading(t);
      }
    }
  });
}

// A gradient tensor may be shared (an op may pass `g` through to several inputs), so sums are
// written to a fresh tensor rather than in place.
function addFresh(a: Tensor, b: Tensor): Tensor {
  const out = empty(a.shape);
  const shape = [a.size];
  run(
    mapKernel({ name: "grad_add", expr: "a + b", inputs: [{ shape }, { shape }], outShape: shape }),
    [a, b],
    [out],
  );
  return out;
}
