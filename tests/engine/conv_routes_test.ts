// The route table: which kernel runs the forward, input gradient and weight gradient of every
// convolution of every registered model at the GPU benchmark shape (batch 8, 512²) under the
// H100 profile, and of two models at a small shape under a two-core software adapter's profile.
// The convolutions come from a dry forward (no kernel runs) and the routes from the planner
// (kernels/conv_plan.ts), so a change of route shows as a diff of the .txt files.
// UPDATE_ROUTES=1 deno test -A tests/engine/conv_routes_test.ts rewrites them.

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import type { ConvCall } from "../../engine/conv_trace.ts";
import { describeRoute, planConv } from "../../kernels/conv_plan.ts";
import { type DeviceProfile, H100_PROFILE, softwareProfile } from "../../kernels/device_profile.ts";
import { MODELS } from "../../models/registry.ts";
import { routeTable } from "./conv_route_calls.ts";

await initDevice();

function routesUnder(profile: DeviceProfile) {
  return (c: ConvCall) => ({
    forward: describeRoute(planConv(c, "forward", profile)),
    dgrad: c.inputGrad ? describeRoute(planConv(c, "inputGrad", profile)) : "-",
    wgrad: c.weightGrad ? describeRoute(planConv(c, "weightGrad", profile)) : "-",
  });
}

const HEADER = (profile: DeviceProfile) =>
  `# Conv routes under the "${profile.name}" device profile (kernels/conv_plan.ts), one entry per\n` +
  "# distinct convolution of a training step (xN: N calls): op in->out channels, kernel, stride,\n" +
  "# padding, [dilation, groups], @batch x input size, activation (+b: bias; +b(cancelled): a\n" +
  "# BatchNorm in training follows, so no weight-gradient pass sums the bias); then the route of\n" +
  "# the forward, the input gradient and the weight gradient ('-': not needed). Rewritten by\n" +
  "# UPDATE_ROUTES=1 deno test -A tests/engine/conv_routes_test.ts\n\n";

async function compare(
  file: string,
  profile: DeviceProfile,
  models: string[],
  batch: number,
  size: number,
) {
  const url = new URL(file, import.meta.url);
  const got = HEADER(profile) + routeTable(models, routesUnder(profile), batch, size);
  if (Deno.env.get("UPDATE_ROUTES") === "1") {
    await Deno.writeTextFile(url, got);
    return;
  }
  const want = await Deno.readTextFile(url);
  if (got !== want) {
    const a = want.split("\n"), b = got.split("\n");
    const diffs: string[] = [];
    for (let i = 0; i < Math.max(a.length, b.length) && diffs.length < 20; i++) {
      if (a[i] !== b[i]) {
        diffs.push(`line ${i + 1}:\n  pinned: ${a[i] ?? ""}\n  now:    ${b[i] ?? ""}`);
      }
    }
    assert.fail(
      `${file} differs (UPDATE_ROUTES=1 rewrites it if the change is meant):\n${diffs.join("\n")}`,
    );
  }
}

Deno.test("conv routes of every registered model at batch 8, 512², H100 profile", async () => {
  await compare("conv_routes_h100.txt", H100_PROFILE, Object.keys(MODELS), 8, 512);
});

Deno.test("conv routes of FC-Siam-diff and TinyCD at batch 2, 64², two-core software profile", async () => {
  await compare("conv_routes_software.txt", softwareProfile(2), ["fc_siam_diff", "tinycd"], 2, 64);
});

Deno.test("the route table sees every conv: FC-Siam-diff's 64→64 input gradient is Winograd", () => {
  const table = routeTable(["fc_siam_diff"], routesUnder(H100_PROFILE));
  const i = table.split("\n").findIndex((l) =>
    l.startsWith("conv 64->64 k3x3 s1x1 p1x1 @8x128x128")
  );
  assert.ok(i > 0, table);
  assert.match(table.split("\n")[i + 1], /dgrad winograd-f[24]-(gemm-)?flip( images=8)? \|/);
});
