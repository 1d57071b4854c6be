// Module: a tree of named parameters, buffers and children whose dotted names follow PyTorch's
// state_dict for the same architecture, so checkpoints of the original code load by name.

import { parameter, type Shape, type Tensor } from "../tensor.ts";
import { Random } from "../random.ts";

export abstract class Module {
  training = true;
  readonly #params = new Map<string, Tensor>();
  readonly #buffers = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();
  /** Children whose names join this module's own level (see `inline`). */
  readonly #inlined = new Set<Module>();

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

  /** Register a child that adds no level to names: its parameters, buffers and children are
   * named as this module's own (e.g. a ConvBnAct whose conv and norm the original code holds as
   * this module's `conv1`, `bn1`). It follows train()/eval() like any child. */
  protected inline<M extends Module>(m: M): M {
    // The key only has to be unique: it never appears in a name.
    this.#children.set(`#inline${this.#inlined.size}`, m);
    this.#inlined.add(m);
    return m;
  }

  #childPrefix(prefix: string, name: string, c: Module): string {
    return this.#inlined.has(c) ? prefix : `${prefix}${name}.`;
  }

  /** Each parameter once, under the first name that reaches it: a module registered under two
   * names (IFN's `encoder1 = encoder2`) shares its tensors, which PyTorch's named_parameters()
   * lists once while state_dict() has both names. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const seen = new Set<Tensor>();
    return this.#allParameters(prefix).filter(([, t]) => !seen.has(t) && seen.add(t));
  }

  /** Every name of every parameter, shared ones under each of their names (state_dict). */
  #allParameters(prefix: string): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#params) out.push([prefix + n, t]);
    for (const [n, c] of this.#children) {
      out.push(...c.#allParameters(this.#childPrefix(prefix, n, c)));
    }
    return out;
  }

  namedBuffers(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#buffers) out.push([prefix + n, t]);
    for (const [n, c] of this.#children) {
      out.push(...c.namedBuffers(this.#childPrefix(prefix, n, c)));
    }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters and buffers by PyTorch state_dict name. */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.#allParameters(""), ...this.namedBuffers()]);
  }

  /** Direct children by registration name (an inlined child's key is `#inlineN`, never part of a
   * state_dict name). */
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

/** Groups whose names all join this module's level, e.g. TinyCD's `_convolution`, whose
 * children 0–5 are two conv → PReLU → InstanceNorm triples (no forward of its own). */
export class Flat extends Module {
  constructor(groups: Module[]) {
    super();
    for (const g of groups) this.inline(g);
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
