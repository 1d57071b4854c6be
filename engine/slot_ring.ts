// Slots of a ring buffer whose values change per dispatch (a dropout seed, AdamW's step size) and
// are written with queue.writeBuffer. Such a write lands before any work recorded but not yet
// submitted, so two pending dispatches must not share a slot, while the slots of submitted work
// are free again. The k-th slot taken since the last submit is therefore slot k (submitting first
// when the ring is full): the same dispatches between submits, as in every step of a training
// run, bind the same slots, so the recorder's cached bind groups serve them.

import { flush, stats } from "./recorder.ts";

export class SlotRing {
  #submits = -1;
  #next = 0;
  constructor(readonly size: number) {}

  /** The slot for the next dispatch; submits pending work first when every slot is taken. */
  take(): number {
    if (this.#next === this.size && this.#submits === stats.submits) flush();
    if (this.#submits !== stats.submits || this.#next === this.size) this.reset(stats.submits);
    return this.#next++;
  }

  /** Forget the slots taken (a new buffer behind the ring, or a submit since `submits`). */
  reset(submits = -1): void {
    this.#submits = submits;
    this.#next = 0;
  }
}
