// Module: a tree of named parameters, buffers and children whose dotted names follow PyTorch's
// state_dict for the same architecture, so checkpoints of the original code load by name.

import { parameter, type Shape, type Tensor } from "../tensor.ts";
import { Random } from "../random.ts";

export abstract class Module {
  training = true;
  readonly #params = new Map<string, Tensor>();
  readonly #buffers = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();

  /** Register a trainable parameter. */
  protected param(name: string, t: Tensor): Tensor {
    t.requiresGrad = true;
    t.keep();
    t.name ||= name;
    this.#params.set(name, t);
    return t;
  }

  /** Register state that is saved but not trained (BatchNorm running statistics). */
  protected buffer(name: string, t: Tensor): Tensor {
    t.keep();
    t.name ||= name;
    this.#buffers.set(name, t);
    return t;
  }

  /** Register a child module; its names are prefixed with `name.`. */
  protected child<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#params) out.push([prefix + n, t]);
    for (const [n, c] of this.#children) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }

  namedBuffers(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#buffers) out.push([prefix + n, t]);
    for (const [n, c] of this.#children) out.push(...c.namedBuffers(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters and buffers by PyTorch state_dict name. */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  children(): [string, Module][] {
    return [...this.#children];
  }

  train(mode = true): this {
    this.training = mode;
    for (const c of this.#children.values()) c.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  parameterCount(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }

  dispose(): void {
    for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) {
      t.kept = false;
      t.dispose();
    }
  }
}

/** PyTorch's default init for conv and linear layers: U(−1/√fan_in, 1/√fan_in) (kaiming_uniform
 * with a = √5 gives exactly this bound), for weights and biases alike. */
export function uniformInit(rng: Random, shape: Shape, fanIn: number, name: string): Tensor {
  const bound = 1 / Math.sqrt(fanIn);
  const n = shape.reduce((p, d) => p * d, 1);
  return parameter(rng.uniform(n, -bound, bound), shape, name);
}

/** A module with one input and one output, so containers can chain it. */
export interface Layer {
  forward(x: Tensor): Tensor;
}

/** Children named "0", "1", ... as nn.Sequential. */
export class Sequential extends Module implements Layer {
  readonly layers: (Module & Layer)[];
  constructor(...layers: (Module & Layer)[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => this.child(String(i), l));
  }
  forward(x: Tensor): Tensor {
    for (const l of this.layers) x = l.forward(x);
    return x;
  }
}

/** Children named "0", "1", ... as nn.ModuleList (no forward of its own). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.child(String(i), m));
  }
}
