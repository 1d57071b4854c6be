// A one-node Slurm cluster for tests: munged, slurmctld and slurmd on localhost with a minimal
// slurm.conf in a temporary folder (its own munge key and socket, free ports, no cgroup plugin:
// proctrack/linuxproc, task/none, no GPUs or gres), installed from Debian's packages when
// missing. stop() cancels what is left of the jobs and ends the three daemons it started.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../temp.ts";

export interface Cluster {
  dir: string;
  /** The environment the Slurm clients (sbatch, squeue) need: SLURM_CONF. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { ok: out.success, stdout: text(out.stdout), stderr: text(out.stderr) };
}

async function have(cmd: string): Promise<boolean> {
  return (await run("sh", ["-c", `command -v ${cmd}`])).ok;
}

/** Install slurm-wlm and munge when missing; the reason when the test cannot run (not root,
 * no apt-get, the install failed), else null. */
export async function ensureSlurm(): Promise<string | null> {
  const tools = ["slurmctld", "slurmd", "sbatch", "squeue", "munged", "mungekey"];
  const missing = async () => (await Promise.all(tools.map(have))).some((h) => !h);
  // slurmd starts job steps as their user and the test cluster runs its daemons as root.
  if (Deno.uid() !== 0) return "the test's Slurm cluster runs as root (and apt-get needs root)";
  if (!(await missing())) return null;
  if (!(await have("apt-get"))) return "Slurm is not installed and there is no apt-get";
  const env = { DEBIAN_FRONTEND: "noninteractive", PATH: Deno.env.get("PATH") ?? "" };
  let r = await run("apt-get", ["install", "-y", "slurm-wlm", "munge"], env);
  if (!r.ok) {
    await run("apt-get", ["update"], env);
    r = await run("apt-get", ["install", "-y", "slurm-wlm", "munge"], env);
  }
  if (!r.ok || await missing()) {
    return `apt-get install -y slurm-wlm munge failed: ${r.stderr.trim().split("\n").at(-1)}`;
  }
  return null;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

async function waitFor(what: string, ok: () => Promise<boolean>, seconds: number, log: string) {
  for (let i = 0; i < seconds * 4; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  let tail = "";
  try {
    tail = Deno.readTextFileSync(log).split("\n").slice(-15).join("\n");
  } catch { /* no log yet */ }
  throw new Error(`${what} did not come up in ${seconds} s; ${log}:\n${tail}`);
}

export async function startCluster(): Promise<Cluster> {
  const dir = await tempDir({ prefix: "cd-slurm-cluster-" });
  const host = (await run("hostname", ["-s"])).stdout.trim();
  const cpus = navigator.hardwareConcurrency ?? 1;
  const sock = join(dir, "munge.sock"), conf = join(dir, "slurm.conf");
  for (const d of ["state", "spool"]) Deno.mkdirSync(join(dir, d));
  const r = await run("mungekey", ["--create", "--keyfile", join(dir, "munge.key")]);
  if (!r.ok) throw new Error(`mungekey failed: ${r.stderr}`);
  const [ctldPort, dPort] = [freePort(), freePort()];
  Deno.writeTextFileSync(
    conf,
    [
      "ClusterName=cdtest",
      `SlurmctldHost=${host}(127.0.0.1)`,
      "AuthType=auth/munge",
      `AuthInfo=socket=${sock}`,
      "CredType=cred/munge",
      "SlurmUser=root",
      "SlurmdUser=root",
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${dPort}`,
      `StateSaveLocation=${join(dir, "state")}`,
      `SlurmdSpoolDir=${join(dir, "spool")}`,
      `SlurmctldPidFile=${join(dir, "slurmctld.pid")}`,
      `SlurmdPidFile=${join(dir, "slurmd.pid")}`,
      `SlurmctldLogFile=${join(dir, "slurmctld.log")}`,
      `SlurmdLogFile=${join(dir, "slurmd.log")}`,
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_CPU",
      "SchedulerType=sched/builtin",
      "ReturnToService=2",
      "MpiDefault=none",
      "JobAcctGatherType=jobacct_gather/none",
      "AccountingStorageType=accounting_storage/none",
      `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} State=UNKNOWN`,
      `PartitionName=test Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
    ].join("\n") + "\n",
  );
  const env = { SLURM_CONF: conf };
  const daemons: Deno.ChildProcess[] = [];
  // Each writes its own log file (named in slurm.conf or on its command line).
  const spawn = (cmd: string, args: string[]) => {
    const p = new Deno.Command(cmd, { args, env, stdin: "null", stdout: "null", stderr: "null" });
    daemons.push(p.spawn());
  };
  const stop = async () => {
    // Jobs still queued or running (a failed test) first: their steps outlive slurmd.
    await run("scancel", ["--full", "--quiet", "--user", "root"], env);
    for (let i = 0; i < 40; i++) {
      const q = await run("squeue", ["-h"], env);
      if (!q.ok || q.stdout.trim() === "") break;
      await new Promise((r) => setTimeout(r, 250));
    }
    for (const p of daemons.reverse()) {
      try {
        p.kill("SIGTERM");
      } catch { /* already gone */ }
      const t = setTimeout(() => {
        try {
          p.kill("SIGKILL");
        } catch { /* already gone */ }
      }, 5000);
      await p.status;
      clearTimeout(t);
    }
  };
  try {
    spawn("munged", [
      "--foreground",
      "--force",
      `--socket=${sock}`,
      `--key-file=${join(dir, "munge.key")}`,
      `--log-file=${join(dir, "munged.log")}`,
      `--pid-file=${join(dir, "munged.pid")}`,
      `--seed-file=${join(dir, "munged.seed")}`,
    ]);
    await waitFor("munged", () => Promise.resolve(existsSync(sock)), 10, join(dir, "munged.log"));
    spawn("slurmctld", ["-D", "-i"]);
    spawn("slurmd", ["-D", "-N", host]);
    await waitFor(
      "the Slurm node",
      async () => {
        const s = await run("sinfo", ["-h", "-o", "%T"], env);
        return s.ok && /^idle/.test(s.stdout.trim());
      },
      30,
      join(dir, "slurmctld.log"),
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { dir, env, stop };
}

/** Wait until none of `jobs` is queued or running; throws when one can never start (its
 * dependency failed) or after `seconds`, with the queue. */
export async function waitForJobs(env: Record<string, string>, seconds: number): Promise<void> {
  for (let i = 0; i < seconds * 2; i++) {
    const q = await run("squeue", ["-h", "-o", "%i %T %r"], env);
    if (!q.ok) throw new Error(`squeue failed: ${q.stderr}`);
    if (q.stdout.trim() === "") return;
    if (/DependencyNeverSatisfied/.test(q.stdout)) {
      throw new Error(`a job failed, so its dependents never start:\n${q.stdout}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`jobs still queued after ${seconds} s`);
}
