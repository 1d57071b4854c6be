// Issue 18 item 14: the report says when a run is too small for its comparison to mean anything
// (the CPU demo: 24 iterations on 32-px images, 12 test pairs), and only then.

import assert from "node:assert/strict";
import type { MetricsReport } from "../../train/metrics.ts";
import { MEANINGFUL, type MethodReport, smallRunWarning } from "../../train/report.ts";

function report(scale: MethodReport["scale"], images = 12): MethodReport {
  return {
    title: "t",
    model: "fc_ef",
    dataset: "d",
    notes: [],
    strategies: [{ name: "Original", report: { images } as MetricsReport }],
    overlays: [],
    scale,
  };
}

Deno.test("report banner: small budget, small images or a small test set, each named", () => {
  const demo = smallRunWarning(report({ iters: 24, size: 32, testPairs: 12 }))!;
  assert.match(demo, /^Too small to compare strategies: each member trained only 24 iterations, /);
  assert.match(demo, /on 32-px images, the test split has only 12 pairs\. .* are noise/);
  const paper = { iters: 20000, size: 512, testPairs: 1000 };
  assert.equal(smallRunWarning(report(paper)), null);
  assert.match(
    smallRunWarning(report({ ...paper, testPairs: MEANINGFUL.testPairs - 1 }))!,
    /: the test split has only 49 pairs\./,
  );
  assert.match(smallRunWarning(report({ ...paper, iters: 999 }))!, /only 999 iterations\./);
  // Without a recorded scale the test size comes from the metrics.
  assert.equal(smallRunWarning(report(undefined, 2000)), null);
  assert.match(smallRunWarning(report(undefined, 5))!, /only 5 pairs/);
});
