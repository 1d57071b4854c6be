// Step scopes: every tensor created inside `scope(fn)` is disposed when fn returns, except the
// tensors it returns (handed to the enclosing scope) and tensors marked kept (parameters, state).

export interface Disposable {
  kept: boolean;
  disposed: boolean;
  dispose(): void;
}

const stack: Set<Disposable>[] = [];

export function track(t: Disposable): void {
  stack.at(-1)?.add(t);
}

function collect(value: unknown, out: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== "object" || depth > 3) return;
  out.add(value);
  if (Array.isArray(value)) { for (const v of value) collect(v, out, depth + 1); }
  else if (value.constructor === Object) {
    for (const v of Object.values(value)) collect(v, out, depth + 1);
  }
}

function close(set: Set<Disposable>, result: unknown): void {
  const keep = new Set<unknown>();
  collect(result, keep);
  const parent = stack.at(-1);
  // Newest first, so the pool's free lists end a step in the order the step will ask for
  // buffers again: the next step gets the same buffers, and its cached bind groups hit.
  for (const t of [...set].reverse()) {
    if (t.disposed) continue;
    if (keep.has(t)) parent?.add(t);
    else if (!t.kept) t.dispose();
  }
}

/** Run fn; dispose every tensor it created except those it returns (arrays and plain objects of
 * tensors count) and kept ones. */
export function scope<T>(fn: () => T): T {
  const set = new Set<Disposable>();
  stack.push(set);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    close(set, undefined);
    throw e;
  }
  stack.pop();
  close(set, result);
  return result;
}

/** As scope(), for async work (do not interleave two async scopes). */
export async function scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
  const set = new Set<Disposable>();
  stack.push(set);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    stack.splice(stack.indexOf(set), 1);
    close(set, undefined);
    throw e;
  }
  stack.splice(stack.indexOf(set), 1);
  close(set, result);
  return result;
}
