// The buffer pool's reuse rules on the real device: a request takes a free buffer of its own
// size class first, then the smallest larger class within 1.5×, and creates one only beyond
// that; the bytes it counts live are the requests' classes (the tensors' demand), the bytes it
// holds the buffers' sizes. (Warm steps getting the same buffers
// again, so the same bind groups: tests/models/bind_group_reuse_test.ts.)

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { pool, sizeClass } from "../../engine/pool.ts";

await initDevice();

// Sizes no other test of this file asks for, so no free buffer of theirs takes part.
const MB = 1 << 20;

Deno.test("a miss takes the smallest larger free class within 1.5×, the earliest created; beyond it a new buffer", () => {
  const small = 30 * MB + 3, mid = 40 * MB + 3, big = 44 * MB + 3;
  const [cs, cm, cb] = [small, mid, big].map(sizeClass);
  assert.ok(cm <= 1.5 * cs && cb <= 1.5 * cs && cm < cb, "the sizes straddle what the test needs");
  const bigA = pool.acquire(big), midA = pool.acquire(mid), midB = pool.acquire(mid);
  for (const b of [bigA, midB, midA]) pool.release(b);
  const held = pool.heldBytes, oversized = pool.oversized, live = pool.liveBytes;

  // No free buffer of the small class: the mid class (smaller than big), earliest created first.
  const first = pool.acquire(small);
  assert.equal(first, midA);
  assert.equal(pool.liveBytes - live, cs, "live bytes count the request's class, not the buffer's");
  assert.equal(pool.acquire(small), midB);
  assert.equal(pool.acquire(small), bigA);
  assert.equal(pool.oversized - oversized, 3);
  assert.equal(pool.heldBytes, held, "nothing created while larger free buffers were in reach");
  // Nothing free within 1.5×: a new buffer of the request's own class.
  const fresh = pool.acquire(small);
  assert.equal(fresh.size, cs);
  assert.equal(pool.heldBytes - held, cs);
  for (const b of [first, midB, bigA, fresh]) pool.release(b);

  // A free buffer of the request's own class wins over a larger one.
  assert.equal(pool.acquire(small), fresh);
  assert.equal(pool.oversized - oversized, 3);
  pool.release(fresh);
  assert.equal(pool.liveBytes, live);
});

Deno.test("a free buffer more than 1.5× the request's class is left for its own class", () => {
  const small = 10 * MB + 5, huge = 16 * MB + 5;
  assert.ok(sizeClass(huge) > 1.5 * sizeClass(small));
  const h = pool.acquire(huge);
  pool.release(h);
  const held = pool.heldBytes;
  const s = pool.acquire(small);
  assert.notEqual(s, h);
  assert.equal(s.size, sizeClass(small));
  assert.equal(pool.heldBytes - held, sizeClass(small));
  pool.release(s);
  assert.equal(pool.acquire(huge), h, "the larger buffer is still there for its class");
  pool.release(h);
});
