// A small pool of module workers that answer one request at a time each, in parallel. Used to
// decode PNGs and to synthesise scenes off the main thread. `close()` terminates every worker so
// that nothing keeps the process (or a test) alive.

import type { WorkerReply, WorkerRequest } from "./worker_serve.ts";

interface Pending<Res> {
  resolve: (r: Res) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: number;
}

/** A request that failed inside a worker; the message is the worker's error message. */
export class WorkerTaskError extends Error {
  constructor(message: string, name = "WorkerTaskError") {
    super(message);
    this.name = name;
  }
}

/** Workers for this machine: all cores but one for the main thread, at least one, at most `cap`. */
export function defaultWorkerCount(cap = 8): number {
  const cores = navigator.hardwareConcurrency || 2;
  return Math.max(1, Math.min(cap, cores - 1));
}

export class WorkerPool<Req, Res> {
  readonly size: number;
  #slots: Slot[] = [];
  #pending = new Map<number, Pending<Res> & { slot: Slot }>();
  #queue: { id: number; req: Req; transfer: Transferable[] }[] = [];
  #nextId = 1;
  #closed = false;
  /** Set once every worker has crashed: later requests fail at once instead of waiting. */
  #crashed: Error | null = null;
  /** Requests each worker holds at once: 2 hides the message round trip between tasks. */
  #depth: number;

  constructor(moduleUrl: URL | string, size: number, depth = 2) {
    this.size = Math.max(1, Math.floor(size));
    this.#depth = Math.max(1, depth);
    const href = typeof moduleUrl === "string" ? moduleUrl : moduleUrl.href;
    for (let i = 0; i < this.size; i++) {
      const worker = new Worker(href, { type: "module" });
      const slot: Slot = { worker, busy: 0 };
      worker.onmessage = (e: MessageEvent<WorkerReply<Res>>) => this.#onReply(slot, e.data);
      worker.onerror = (e: ErrorEvent) => {
        // A worker that crashed (e.g. its module failed to load) fails its requests, not the process.
        e.preventDefault();
        this.#failSlot(slot, new WorkerTaskError(`worker crashed: ${e.message}`));
      };
      this.#slots.push(slot);
    }
  }

  /** Queue a request; resolves with the worker's answer. `transfer` moves buffers instead of copying. */
  run(req: Req, transfer: Transferable[] = []): Promise<Res> {
    if (this.#closed) return Promise.reject(new WorkerTaskError("worker pool is closed"));
    if (this.#crashed) return Promise.reject(this.#crashed);
    const id = this.#nextId++;
    const promise = new Promise<Res>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, slot: null as unknown as Slot });
    });
    this.#queue.push({ id, req, transfer });
    this.#dispatch();
    return promise;
  }

  /** Terminate all workers; requests still in flight reject. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#slots) s.worker.terminate();
    const err = new WorkerTaskError("worker pool closed before the request finished");
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#queue = [];
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      let best: Slot | null = null;
      for (const s of this.#slots) {
        if (s.busy < this.#depth && (!best || s.busy < best.busy)) best = s;
      }
      if (!best) return;
      const task = this.#queue.shift()!;
      const p = this.#pending.get(task.id)!;
      p.slot = best;
      best.busy++;
      const msg: WorkerRequest<Req> = { id: task.id, req: task.req };
      best.worker.postMessage(msg, task.transfer);
    }
  }

  #onReply(slot: Slot, reply: WorkerReply<Res>): void {
    const p = this.#pending.get(reply.id);
    if (!p) return;
    this.#pending.delete(reply.id);
    slot.busy--;
    if (reply.ok) p.resolve(reply.res);
    else p.reject(new WorkerTaskError(reply.error, reply.name));
    this.#dispatch();
  }

  #failSlot(slot: Slot, err: Error): void {
    for (const [id, p] of this.#pending) {
      if (p.slot === slot) {
        this.#pending.delete(id);
        p.reject(err);
      }
    }
    slot.busy = Number.POSITIVE_INFINITY; // never hand it work again
    if (this.#slots.every((s) => s.busy === Number.POSITIVE_INFINITY)) {
      this.#crashed = err;
      for (const q of this.#queue) this.#pending.get(q.id)?.reject(err);
      this.#queue = [];
    }
  }
}
