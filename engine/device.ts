// The one GPU device of the process: adapter choice, the features and limits kernels use, and
// error reporting that names the op responsible.

export interface DeviceInfo {
  description: string;
  isFallback: boolean;
  features: string[];
  maxStorageBufferBindingSize: number;
  maxWorkgroupStorage: number;
}

let devicePromise: Promise<GPUDevice> | null = null;
let current: GPUDevice | null = null;
let info: DeviceInfo | null = null;
let lost: string | null = null;

const WANTED_FEATURES = ["timestamp-query", "shader-f16"] as const;

export class NoAdapterError extends Error {
  constructor() {
    super(
      "No WebGPU adapter found. On a machine without a GPU install Mesa's software Vulkan driver " +
        "(`apt-get install mesa-vulkan-drivers`); on a GPU machine make sure the Vulkan loader " +
        "(libvulkan1) and the vendor's Vulkan driver are installed.",
    );
  }
}

async function create(): Promise<GPUDevice> {
  if (!("gpu" in navigator) || !navigator.gpu) throw new NoAdapterError();
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
  device.lost.then((i) => {
    lost = `GPU device lost (${i.reason}): ${i.message}`;
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
    features: [...device.features],
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxWorkgroupStorage: device.limits.maxComputeWorkgroupStorageSize,
  };
  current = device;
  return device;
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

/** Throws if the GPU reported an uncaptured error; the message carries the labels of the
 * pipeline and bind group, which are the op names. */
export function throwPendingErrors(): void {
  if (lost) throw new Error(lost);
  if (pendingErrors.length) {
    const msgs = pendingErrors.splice(0);
    throw new Error(`GPU error: ${msgs.join("\n")}`);
  }
}

export function hasFeature(name: string): boolean {
  return info?.features.includes(name) ?? false;
}
