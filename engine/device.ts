// The one GPU device of the process: adapter choice, the features and limits kernels use, and
// error reporting that names the op responsible. The backend is chosen deliberately: the engine
// needs compute shaders with many storage buffers, so only Vulkan, Metal and DX12 are asked for;
// without them Deno's WebGPU would fall back to OpenGL and run for minutes without a word.
// releaseDevice() waits for submitted work and destroys the device: a process that ends with work
// still queued makes Deno panic ("timed out while waiting on the last successful submission").

import {
  profileForAdapter,
  setActiveProfile,
  SOFTWARE_ADAPTER,
} from "../kernels/device_profile.ts";

export interface DeviceInfo {
  description: string;
  isFallback: boolean;
  /** PCI vendor id as WebGPU reports it (e.g. 0x10de), with its name where known. */
  vendor: string;
  /** PCI device id (0 on software drivers). */
  device: string;
  /** Driver version: Deno's WebGPU does not expose it, so NVIDIA's kernel module version from
   * /proc/driver/nvidia/version where present, else what the description carries. */
  driver: string;
  features: string[];
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxWorkgroupStorage: number;
}

let devicePromise: Promise<GPUDevice> | null = null;
let current: GPUDevice | null = null;
let info: DeviceInfo | null = null;
let lost: string | null = null;

const WANTED_FEATURES = ["timestamp-query", "shader-f16"] as const;

/** Backends with the compute the kernels need, as DENO_WEBGPU_BACKEND names them. */
export const COMPUTE_BACKENDS = "vulkan,metal,dx12";
const UNSUITABLE = ["gl", "gles", "opengl"];
const INSTALL_HINT = "On a machine without a GPU install Mesa's software Vulkan driver " +
  "(`apt-get install mesa-vulkan-drivers`, or ./setup.sh); on a GPU machine make sure the Vulkan " +
  "loader (libvulkan1) and the vendor's Vulkan driver are installed (`vulkaninfo --summary` lists " +
  "them; VK_ICD_FILENAMES / VK_DRIVER_FILES, when set, must name an existing driver file).";

export class NoAdapterError extends Error {
  constructor(detail = "") {
    super(
      `No WebGPU adapter with compute found (backends tried: ${COMPUTE_BACKENDS}; OpenGL is not ` +
        `used: the kernels need compute shaders with many storage buffers).${detail} ` +
        INSTALL_HINT,
    );
  }
}

let announce = false;
/** Commands call this so the adapter is named on stderr as soon as the device starts. */
export function announceAdapter(on = true): void {
  announce = on;
}

/** Ask Deno's WebGPU for the compute backends only, unless the user chose one; refuse OpenGL. */
function chooseBackend(): void {
  let chosen: string | undefined;
  try {
    chosen = Deno.env.get("DENO_WEBGPU_BACKEND");
    if (chosen === undefined) Deno.env.set("DENO_WEBGPU_BACKEND", COMPUTE_BACKENDS);
  } catch {
    return; // no env permission: Deno's default order applies
  }
  const names = (chosen ?? "").toLowerCase().split(",").map((b) => b.trim());
  if (names.some((b) => UNSUITABLE.includes(b))) {
    throw new NoAdapterError(
      ` DENO_WEBGPU_BACKEND=${chosen} asks for OpenGL; unset it or set it to ${COMPUTE_BACKENDS}.`,
    );
  }
}

/** The API Deno's WebGPU uses here for the chosen backends. */
function backendName(): string {
  const os = Deno.build.os;
  return os === "darwin" ? "Metal" : os === "windows" ? "DX12 or Vulkan" : "Vulkan";
}

async function create(): Promise<GPUDevice> {
  if (!("gpu" in navigator) || !navigator.gpu) throw new NoAdapterError();
  chooseBackend();
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new NoAdapterError();
  const features = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const l = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
  };
  // The adapter may not list `subgroups` although the device accepts it (seen on NVIDIA).
  let device: GPUDevice | null = null;
  try {
    device = await adapter.requestDevice({
      requiredFeatures: [...features, "subgroups" as GPUFeatureName],
      requiredLimits,
    });
  } catch {
    device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  }
  const made = device;
  device.lost.then((i) => {
    // releaseDevice() clears `current` first: its own destroy() is not a loss.
    if (current === made) lost = `GPU device lost (${i.reason}): ${i.message}`;
  });
  device.addEventListener("uncapturederror", (e) => {
    const err = (e as GPUUncapturedErrorEvent).error;
    pendingErrors.push(err.message);
  });
  const ai = adapter.info;
  info = {
    description: ai.description || ai.vendor || "unknown adapter",
    isFallback: (ai as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
      false,
    vendor: vendorName(ai.vendor),
    device: hexId(ai.device),
    driver: driverVersion(ai.description),
    features: [...device.features],
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxBufferSize: device.limits.maxBufferSize,
    maxWorkgroupStorage: device.limits.maxComputeWorkgroupStorageSize,
  };
  setActiveProfile(profileForAdapter(info, navigator.hardwareConcurrency ?? 1));
  current = device;
  releaseAtExit();
  if (announce) console.error(`adapter: ${describeAdapter()}`);
  return device;
}

/** True when the adapter is a CPU (software) driver: llvmpipe, SwiftShader, WebGPU's fallback. */
export function isSoftwareAdapter(): boolean {
  const i = deviceInfo();
  return i.isFallback || SOFTWARE_ADAPTER.test(i.description);
}

/** One line naming the adapter (vendor, device, driver), its backend and whether it is a CPU
 * (software) driver: a job on a cluster logs it, so a node that handed out the wrong GPU or
 * none shows in the job's log. */
export function describeAdapter(): string {
  const i = deviceInfo();
  return `${i.description} (${backendName()}; vendor ${i.vendor}, device ${i.device}, driver ${i.driver}${
    isSoftwareAdapter()
      ? "; software driver on the CPU: fine for tests and the demo, slow for training"
      : ""
  })`;
}

const VENDORS: Record<number, string> = {
  0x10de: "NVIDIA",
  0x1002: "AMD",
  0x8086: "Intel",
  0x10005: "Mesa",
  0x106b: "Apple",
  0x1414: "Microsoft",
};

function hexId(v: string | undefined): string {
  const n = Number(v);
  return v && Number.isFinite(n) ? `0x${n.toString(16)}` : (v || "unknown");
}

function vendorName(v: string | undefined): string {
  const n = Number(v);
  const name = Number.isFinite(n) ? VENDORS[n] : undefined;
  return name ? `${name} (${hexId(v)})` : hexId(v);
}

function driverVersion(description: string): string {
  try {
    const t = Deno.readTextFileSync("/proc/driver/nvidia/version");
    const m = /Kernel Module\s+([\d.]+)/.exec(t);
    if (m) return `NVIDIA ${m[1]}`;
  } catch {
    // no NVIDIA kernel module (or no read permission)
  }
  const m = /\(([^)]*\d[^)]*)\)/.exec(description);
  return m ? m[1] : "not reported by WebGPU";
}

let exitHook = false;
/** When the event loop runs dry with the device still alive (a script or test file that never
 * called releaseDevice), keep the process alive until the queue is drained and the device
 * destroyed: `beforeunload` fires again afterwards and then lets it end. */
function releaseAtExit(): void {
  if (exitHook) return;
  exitHook = true;
  globalThis.addEventListener("beforeunload", (e) => {
    if (!current) return;
    e.preventDefault();
    releaseDevice();
  });
}

/**
 * Wait for every submitted command buffer, then destroy the device. Call before the process
 * ends (runCommand does): Deno panics at exit when the queue still holds work. Idempotent; a
 * later initDevice() starts a fresh device.
 */
export async function releaseDevice(): Promise<void> {
  const d = current;
  if (!d) return;
  current = null;
  devicePromise = null;
  await d.queue.onSubmittedWorkDone();
  d.destroy();
}

const pendingErrors: string[] = [];

/** Initialise (once) and return the device. Every other engine call needs this first. */
export function initDevice(): Promise<GPUDevice> {
  devicePromise ??= create();
  return devicePromise;
}

/** The device, which must have been initialised with `await initDevice()`. */
export function device(): GPUDevice {
  if (lost) throw new Error(lost);
  if (!current) throw new Error("GPU device not initialised: call `await initDevice()` first");
  return current;
}

export function deviceInfo(): DeviceInfo {
  if (!info) throw new Error("GPU device not initialised: call `await initDevice()` first");
  return info;
}

/** What the buffer pool holds, named when the GPU runs out of memory (pool.ts sets it: the pool
 * sits above the device). */
let memoryReport: (() => string) | null = null;
export function setMemoryReport(report: () => string): void {
  memoryReport = report;
}

/** Throws if the GPU reported an uncaptured error; the message carries the labels of the
 * pipeline and bind group, which are the op names. */
export function throwPendingErrors(): void {
  if (lost) throw new Error(lost);
  if (pendingErrors.length) {
    const msgs = pendingErrors.splice(0).join("\n");
    throw new Error(gpuErrorMessage(msgs, memoryReport?.()));
  }
}

/** The error's text; out of memory also says what this process held and what to change. */
export function gpuErrorMessage(msgs: string, held?: string): string {
  if (!/not enough memory|out of memory/i.test(msgs)) return `GPU error: ${msgs}`;
  return `GPU out of memory: ${msgs}${held ? ` (${held})` : ""}; use a smaller batch or image ` +
    "size, or run fewer processes on this GPU at once (each holds its own buffers)";
}

/** Map a readback buffer, then report any error the GPU raised meanwhile: a submission that
 * failed validation (a destroyed or never-created buffer: out of memory) leaves the copy
 * unwritten and the map succeeds, so without this a read returned zeros; where the map itself
 * fails, the GPU's own error says why better than the map's. */
export async function mapRead(staging: GPUBuffer): Promise<void> {
  try {
    await staging.mapAsync(GPUMapMode.READ);
  } catch (e) {
    staging.destroy();
    throwPendingErrors();
    throw e;
  }
  try {
    throwPendingErrors();
  } catch (e) {
    staging.unmap();
    staging.destroy();
    throw e;
  }
}

export function hasFeature(name: string): boolean {
  return info?.features.includes(name) ?? false;
}
