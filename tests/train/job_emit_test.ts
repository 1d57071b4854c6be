// The cluster jobs op --emit writes: the Kubernetes Jobs checked against the fields of the
// batch/v1 Job schema that matter here (a hand-written zod schema: no cluster or OpenAPI
// document in CI), the Slurm scripts and their afterok chain (with --teacher-init original, M_O's
// job before the teachers'), and where a unit's index comes from. The emitted Slurm array runs for real in tests/cli/slurm_test.ts.

import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { unitIndex } from "../../train/array_index.ts";
import { isGpuJob } from "../../train/gpu_job.ts";
import { flagArgs, type PlanInput, planJobs } from "../../train/job_plan.ts";
import { writeK8s } from "../../train/k8s_emit.ts";
import { shellQuote, writeSlurm } from "../../train/slurm_emit.ts";
import { tempDir } from "../temp.ts";

const REPO = new URL("../..", import.meta.url).pathname;

const Container = z.object({
  name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/),
  image: z.string().min(1),
  workingDir: z.string().startsWith("/"),
  command: z.array(z.string()).min(3),
  env: z.array(z.object({ name: z.string(), value: z.string() })),
  resources: z.object({ limits: z.object({ "nvidia.com/gpu": z.literal(1) }).strict() }),
  volumeMounts: z.array(z.object({ name: z.string(), mountPath: z.string().startsWith("/") }))
    .length(1),
}).strict();

const JobSchema = z.object({
  apiVersion: z.literal("batch/v1"),
  kind: z.literal("Job"),
  metadata: z.object({
    name: z.string().max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/),
    labels: z.record(z.string(), z.string()),
  }),
  spec: z.object({
    completionMode: z.literal("Indexed").optional(),
    completions: z.number().int().positive(),
    parallelism: z.number().int().positive(),
    backoffLimit: z.number().int().nonnegative(),
    template: z.object({
      metadata: z.object({ labels: z.record(z.string(), z.string()) }),
      spec: z.object({
        // An Indexed Job's pods may not restart Always (the API server refuses it).
        restartPolicy: z.enum(["Never", "OnFailure"]),
        containers: z.array(Container).length(1),
        volumes: z.array(
          z.object({
            name: z.string(),
            persistentVolumeClaim: z.object({ claimName: z.string().min(1) }).strict(),
          }).strict(),
        ).length(1),
      }).strict(),
    }),
  }).strict(),
}).strict();

const plan = (lambdas: number[]) =>
  planJobs({
    name: "FC_EF run/1",
    members: 4,
    lambdas,
    common: { model: "fc_ef", data: "/shared/data", teachers: 3, augment: false },
    out: "/shared/run",
    memberIters: 20,
    studentIters: 10,
  });

const K8S = { image: "cd:1", claim: "runs", mount: "/shared", workdir: "/app" };

Deno.test("emitted Kubernetes Jobs: an Indexed Job of the members, then distillation", async () => {
  const dir = await tempDir({ prefix: "cd-k8s-" });
  const line = writeK8s(plan([1e-4]), dir, K8S);
  const members = JobSchema.parse(JSON.parse(Deno.readTextFileSync(join(dir, "members-job.json"))));
  const distill = JobSchema.parse(JSON.parse(Deno.readTextFileSync(join(dir, "distill-job.json"))));
  assert.equal(members.spec.completionMode, "Indexed");
  assert.equal(members.spec.completions, 4);
  assert.equal(members.spec.parallelism, 4);
  assert.equal(distill.spec.completionMode, undefined);
  assert.equal(distill.spec.completions, 1);
  const mc = members.spec.template.spec.containers[0];
  // The member's index comes from JOB_COMPLETION_INDEX, which op reads when --member is absent.
  assert.deepEqual(mc.command.slice(0, 3), ["deno", "task", "op"]);
  assert.ok(!mc.command.includes("--member"));
  assert.deepEqual(mc.command.slice(mc.command.indexOf("--out"), mc.command.indexOf("--out") + 2), [
    "--out",
    "/shared/run",
  ]);
  assert.ok(mc.command.includes("--no-augment"));
  const dc = distill.spec.template.spec.containers[0];
  assert.deepEqual(dc.command.slice(0, 3), ["deno", "task", "distill"]);
  assert.equal(dc.command[dc.command.indexOf("--iters") + 1], "10");
  assert.equal(dc.command[dc.command.indexOf("--from") + 1], "/shared/run");
  for (const j of [members, distill]) {
    const c = j.spec.template.spec.containers[0];
    assert.equal(c.volumeMounts[0].mountPath, "/shared");
    assert.equal(c.volumeMounts[0].name, j.spec.template.spec.volumes[0].name);
    assert.equal(j.spec.template.spec.volumes[0].persistentVolumeClaim.claimName, "runs");
    assert.match(
      c.env.find((e) => e.name === "NVIDIA_DRIVER_CAPABILITIES")!.value,
      /(^|,)graphics(,|$)/,
    );
  }
  assert.match(
    line,
    /kubectl apply -f \S+members-job\.json && kubectl wait --for=condition=complete/,
  );
  assert.match(line, /job\/fc-ef-run-1-members && kubectl apply -f \S+distill-job\.json$/);
});

Deno.test("a λ grid adds an Indexed Job of the students between members and distillation", async () => {
  const dir = await tempDir({ prefix: "cd-k8s-" });
  writeK8s(plan([1e-5, 1e-4, 1e-3]), dir, K8S);
  const students = JobSchema.parse(
    JSON.parse(Deno.readTextFileSync(join(dir, "students-job.json"))),
  );
  assert.equal(students.spec.completionMode, "Indexed");
  assert.equal(students.spec.completions, 3);
  assert.ok(students.spec.template.spec.containers[0].command.includes("--lambda-grid"));
  const sdir = await tempDir({ prefix: "cd-slurm-" });
  const line = writeSlurm(plan([1e-5, 1e-4, 1e-3]), sdir, { workdir: REPO, gres: "gpu:1" });
  assert.match(
    line,
    /^j0=\$\(sbatch --parsable \S+members\.sbatch\) && j1=\$\(sbatch --parsable --dependency=afterok:\$\{j0%%;\*\} \S+students\.sbatch\) && j2=\$\(sbatch --parsable --dependency=afterok:\$\{j1%%;\*\} \S+distill\.sbatch\)/,
  );
  const s = Deno.readTextFileSync(join(sdir, "students.sbatch"));
  assert.match(s, /#SBATCH --array=0-2\n/);
  assert.match(s, /--lambda-grid --lambda-index "\$SLURM_ARRAY_TASK_ID"\n$/);
});

Deno.test("emitted Slurm scripts: an array over the members, one GPU each, a log per task", async () => {
  const dir = await tempDir({ prefix: "cd-slurm-" });
  const line = writeSlurm(plan([1e-4]), dir, { workdir: REPO, gres: "gpu:1", partition: "gpu" });
  const m = Deno.readTextFileSync(join(dir, "members.sbatch"));
  assert.match(m, /^#!\/bin\/bash\n/);
  assert.match(m, /#SBATCH --array=0-3\n/);
  assert.match(m, /#SBATCH --gres=gpu:1\n/);
  assert.match(m, /#SBATCH --partition=gpu\n/);
  assert.ok(m.includes(`#SBATCH --output=${join(dir, "logs")}/members_%A_%a.log\n`));
  assert.match(m, /exec deno task op .*--member "\$SLURM_ARRAY_TASK_ID"\n$/);
  const d = Deno.readTextFileSync(join(dir, "distill.sbatch"));
  assert.doesNotMatch(d, /--array/);
  assert.match(d, /exec deno task distill .*--lambda 0\.0001\n$/);
  assert.equal(Deno.readTextFileSync(join(dir, "submit.sh")).trim().split("\n").at(-1), line);
  assert.ok(line.includes("--dependency=afterok:${j0%%;*}"));
  // The gres line can be left out (a cluster without GPUs, as the Slurm test runs).
  const bare = await tempDir({ prefix: "cd-slurm-" });
  writeSlurm(plan([1e-4]), bare, { workdir: REPO, gres: null });
  assert.doesNotMatch(Deno.readTextFileSync(join(bare, "members.sbatch")), /--gres/);
  assert.equal(shellQuote("a b'c"), `'a b'\\''c'`);
  assert.deepEqual(flagArgs({ thresholds: [0.1, 0.3], augment: false, lr: undefined }), [
    "--thresholds",
    "0.1,0.3",
    "--no-augment",
  ]);
});

Deno.test("--teacher-init original: M_O's own job first, then the teachers' array after it", async () => {
  const input: PlanInput = {
    name: "FC_EF run/1",
    members: 4,
    lambdas: [1e-4],
    common: { model: "fc_ef", data: "/shared/data", teachers: 3 },
    out: "/shared/run",
    memberIters: 20,
    studentIters: 10,
    teacherInit: "original",
  };
  const p = planJobs(input);
  assert.deepEqual(p.stages.map((s) => [s.name, s.tasks, s.firstIndex ?? 0]), [
    ["original", null, 0],
    ["teachers", 3, 1],
    ["distill", null, 0],
  ]);
  for (const st of p.stages) {
    assert.equal(st.argv[st.argv.indexOf("--teacher-init") + 1], "original", st.name);
  }
  // Slurm: M_O's job is member 0, the teachers' array runs members 1..3 once it succeeded.
  const sdir = await tempDir({ prefix: "cd-slurm-" });
  const line = writeSlurm(p, sdir, { workdir: REPO, gres: "gpu:1" });
  const o = Deno.readTextFileSync(join(sdir, "original.sbatch"));
  assert.doesNotMatch(o, /--array/);
  assert.match(o, /exec deno task op .*--teacher-init original .*--member 0\n$/);
  const t = Deno.readTextFileSync(join(sdir, "teachers.sbatch"));
  assert.match(t, /#SBATCH --array=1-3\n/);
  assert.match(t, /exec deno task op .*--member "\$SLURM_ARRAY_TASK_ID"\n$/);
  assert.match(
    line,
    /^j0=\$\(sbatch --parsable \S+original\.sbatch\) && j1=\$\(sbatch --parsable --dependency=afterok:\$\{j0%%;\*\} \S+teachers\.sbatch\) && j2=\$\(sbatch --parsable --dependency=afterok:\$\{j1%%;\*\} \S+distill\.sbatch\)/,
  );
  // Kubernetes: applied in that order, each once the one before completed; the teachers'
  // Indexed Job counts from 0, so its pods add 1 to JOB_COMPLETION_INDEX.
  const kdir = await tempDir({ prefix: "cd-k8s-" });
  const k = writeK8s(p, kdir, K8S);
  const job = (n: string) =>
    JobSchema.parse(JSON.parse(Deno.readTextFileSync(join(kdir, `${n}-job.json`))));
  const oc = job("original").spec.template.spec.containers[0].command;
  assert.equal(job("original").spec.completionMode, undefined);
  assert.deepEqual(oc.slice(0, 3), ["deno", "task", "op"]);
  assert.deepEqual(oc.slice(-2), ["--member", "0"]);
  const teachers = job("teachers");
  assert.equal(teachers.spec.completionMode, "Indexed");
  assert.equal(teachers.spec.completions, 3);
  const tc = teachers.spec.template.spec.containers[0].command;
  assert.deepEqual(tc.slice(0, 2), ["sh", "-c"]);
  assert.match(
    tc[2],
    /^exec deno task op .*--teacher-init original .*--member "\$\(\(JOB_COMPLETION_INDEX \+ 1\)\)"$/,
  );
  // What sh makes of it: pod 2 trains member 3.
  const echo = tc[2].replace(/^exec deno /, "exec echo deno ");
  const out = await new Deno.Command("sh", {
    args: ["-c", echo],
    env: { JOB_COMPLETION_INDEX: "2" },
  })
    .output();
  assert.match(new TextDecoder().decode(out.stdout), / --member 3\n$/);
  assert.match(
    k,
    /original-job\.json && kubectl wait --for=condition=complete --timeout=-1s job\/fc-ef-run-1-original && kubectl apply -f \S+teachers-job\.json && kubectl wait --for=condition=complete --timeout=-1s job\/fc-ef-run-1-teachers && kubectl apply -f \S+distill-job\.json$/,
  );
  // Scratch (the default, or given): one array of every member, as before.
  for (const teacherInit of [undefined, "scratch"] as const) {
    const flat = planJobs({ ...input, teacherInit });
    assert.deepEqual(flat.stages.map((s) => [s.name, s.tasks]), [["members", 4], [
      "distill",
      null,
    ]]);
  }
});

Deno.test("a unit's index: the flag, else SLURM_ARRAY_TASK_ID, else JOB_COMPLETION_INDEX", () => {
  const env = (vars: Record<string, string>) => (k: string) => vars[k];
  assert.deepEqual(unitIndex(2, "--member", env({ SLURM_ARRAY_TASK_ID: "1" })), {
    index: 2,
    from: "--member",
  });
  assert.deepEqual(unitIndex(undefined, "--member", env({ SLURM_ARRAY_TASK_ID: "1" })), {
    index: 1,
    from: "SLURM_ARRAY_TASK_ID",
  });
  assert.deepEqual(unitIndex(undefined, "--member", env({ JOB_COMPLETION_INDEX: "3" })), {
    index: 3,
    from: "JOB_COMPLETION_INDEX",
  });
  assert.equal(unitIndex(undefined, "--member", env({})), null);
  assert.throws(
    () => unitIndex(undefined, "--member", env({ SLURM_ARRAY_TASK_ID: "x" })),
    /SLURM_ARRAY_TASK_ID=x: not a task index.*--member K/,
  );
  assert.equal(isGpuJob(false, env({})), false);
  assert.equal(isGpuJob(true, env({})), true);
  assert.equal(isGpuJob(false, env({ SLURM_JOB_ID: "7" })), true);
  assert.equal(isGpuJob(false, env({ CD_GPU_JOB: "1" })), true);
});

Deno.test("op --emit k8s refuses a path outside the shared volume, naming the flag", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(REPO, "cli/op.ts"),
      ...["--model", "fc_ef", "--data", "/elsewhere/data", "--out", "/shared/run"],
      ...["--emit", "k8s", await tempDir()],
    ],
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(out.code, 1);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /--data \/elsewhere\/data: not under --k8s-mount \/shared/,
  );
});
