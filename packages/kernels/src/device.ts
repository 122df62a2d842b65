// The WebGPU device: adapter choice, limits, features and error routing, in Node (Dawn through npm
// `webgpu`) and in browsers (`navigator.gpu`).

/** Optional features used when the adapter has them. */
export const OPTIONAL_FEATURES: readonly GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

export interface DeviceOptions {
  /** Dawn backend in Node: 'vulkan', 'metal', 'd3d12', 'd3d11', 'opengl', 'opengles', 'null'. Env: MPFGVC_BACKEND. */
  backend?: string;
  /** Substring of the adapter's name (case-insensitive). Env: MPFGVC_ADAPTER. */
  adapter?: string;
  /** Env: MPFGVC_POWER ('low-power' | 'high-performance'). */
  powerPreference?: GPUPowerPreference;
  /** Features to request; default: those of OPTIONAL_FEATURES the adapter has. */
  features?: GPUFeatureName[];
}

export interface AdapterInfo {
  name: string;
  vendor: string;
  architecture: string;
  description: string;
  backend: string;
  isFallback: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /**
   * Vector registers of the CPU that runs this process, as a compiler targets them: 32 with
   * AVX-512VL, 16 with AVX2 (Linux x86-64 in Node, from /proc/cpuinfo); 0 where unknown
   * (browsers, other systems). A CPU adapter in this process (lavapipe) compiles for that CPU, and
   * its matmul takes wider register blocks where there are more registers (matmul/kernels.ts).
   */
  hostVectorRegisters: number;
}

export class DeviceLostError extends Error {
  override name = 'DeviceLostError';
}

export class GPUValidationError extends Error {
  override name = 'GPUValidationError';
}

/** A WebGPU adapter could not be found or did not match the options. */
export class AdapterError extends Error {
  override name = 'AdapterError';
}

function env(key: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const v = p?.env?.[key];
  return v === '' ? undefined : v;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

interface DawnModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

// Dawn's GPU objects must stay referenced for the life of the process: when one is collected, later
// dispatches on devices it made crash or hang.
const liveInstances: GPU[] = [];
let dawn: DawnModule | undefined;

async function loadDawn(): Promise<DawnModule> {
  if (dawn) return dawn;
  // Mesa's Vulkan drivers warn on every start when this is unset.
  const proc = (globalThis as unknown as { process: { env: Record<string, string | undefined> } }).process;
  if (!proc.env.XDG_RUNTIME_DIR) proc.env.XDG_RUNTIME_DIR = '/tmp';
  const explicit = env('MPFGVC_DAWN_NODE');
  let mod: DawnModule;
  if (explicit) {
    const { createRequire } = await import('node:module');
    mod = createRequire(import.meta.url)(explicit) as DawnModule;
  } else {
    const name = 'webgpu';
    mod = (await import(/* @vite-ignore */ name)) as DawnModule;
  }
  Object.assign(globalThis, mod.globals);
  dawn = mod;
  return mod;
}

/**
 * Runs a Dawn call that discovers adapters with Dawn's notices about the limits it lowers kept off
 * stderr (./native-stderr.ts). Node only: the package's `browser` field leaves that module out of
 * pages, which never reach this.
 */
async function quietly<T>(call: () => Promise<T>): Promise<T> {
  const { withoutDawnNotices } = await import('./native-stderr.js');
  return withoutDawnNotices(call);
}

/** Adapters Dawn can see, as `{backend, name}` (Node only; [] in browsers). */
export async function listAdapters(): Promise<{ backend: string; name: string }[]> {
  if (!isNode()) return [];
  const d = await loadDawn();
  // Dawn lists every adapter in its error when no adapter matches the name asked for.
  let message = '';
  try {
    const gpu = d.create(['adapter=\u0001no-such-adapter\u0001']);
    liveInstances.push(gpu);
    await quietly(() => gpu.requestAdapter());
  } catch (e) {
    message = String((e as Error).message ?? e);
  }
  const out: { backend: string; name: string }[] = [];
  for (const m of message.matchAll(/backend:\s*'([^']*)',\s*name:\s*'([^']*)'/g)) out.push({ backend: m[1]!, name: m[2]! });
  return out;
}

/**
 * A further Dawn instance that offers only the adapter `info` describes (Node only), loaded the
 * way ours is (MPFGVC_DAWN_NODE or npm `webgpu`): other WebGPU libraries measured beside ours get it
 * as their `navigator.gpu` and so run on the same adapter. Kept referenced like ours.
 */
export async function dawnInstance(info: AdapterInfo): Promise<GPU> {
  if (!isNode()) throw new AdapterError('dawnInstance: Dawn runs in Node only; in browsers use navigator.gpu');
  const d = await loadDawn();
  const available = await listAdapters();
  if (!available.some((a) => a.name === info.name && a.backend === info.backend)) {
    throw new AdapterError(`dawnInstance: adapter '${info.name}' (${info.backend}) is not among Dawn's adapters: ${describeAdapters(available)}`);
  }
  const gpu = d.create([`backend=${info.backend}`, `adapter=${info.name}`]);
  liveInstances.push(gpu);
  // The other library discovers the adapter through this instance; Dawn's notices stay quiet there too.
  const discover = gpu.requestAdapter.bind(gpu);
  gpu.requestAdapter = (options) => quietly(() => discover(options));
  return gpu;
}

function describeAdapters(list: { backend: string; name: string }[]): string {
  return list.length ? list.map((a) => `${a.backend}: ${a.name}`).join('; ') : 'none';
}

async function requestAdapter(opts: DeviceOptions): Promise<{ adapter: GPUAdapter; backend: string; name?: string }> {
  const backend = opts.backend ?? env('MPFGVC_BACKEND');
  const name = opts.adapter ?? env('MPFGVC_ADAPTER');
  const powerPreference = opts.powerPreference ?? (env('MPFGVC_POWER') as GPUPowerPreference | undefined);
  const wanted = [backend && `backend=${backend}`, name && `adapter=${name}`].filter(Boolean).join(', ');
  if (!isNode()) {
    const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
    if (!gpu) throw new AdapterError('WebGPU is not available in this browser (navigator.gpu is undefined)');
    const adapter = await gpu.requestAdapter(powerPreference ? { powerPreference } : {});
    if (!adapter) throw new AdapterError('the browser offers no WebGPU adapter');
    return { adapter, backend: 'browser' };
  }
  const d = await loadDawn();
  const flags: string[] = [];
  if (backend) flags.push(`backend=${backend}`);
  if (name) flags.push(`adapter=${name}`);
  let adapter: GPUAdapter | null = null;
  let failure = '';
  try {
    const gpu = d.create(flags);
    liveInstances.push(gpu);
    adapter = await quietly(() => gpu.requestAdapter(powerPreference ? { powerPreference } : {}));
  } catch (e) {
    failure = String((e as Error).message ?? e).split('\n')[0] ?? '';
  }
  if (!adapter) {
    const available = await listAdapters();
    const why = wanted ? `no WebGPU adapter matches ${wanted}` : 'no WebGPU adapter found';
    throw new AdapterError(
      `${why}${failure && !/no suitable|available adapters/i.test(failure) ? ` (${failure})` : ''}; available: ${describeAdapters(available)}` +
        (available.length ? '' : " (install a Vulkan driver, e.g. Mesa's mesa-vulkan-drivers; see scripts/setup.mjs)"),
    );
  }
  // Dawn names adapters in its list as the driver reports them; GPUAdapterInfo.device is that name
  // slugged. Matching the two gives the backend and a readable name.
  const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  const info = adapter.info;
  const match = (await listAdapters()).find((a) => slug(a.name) === slug(info.device) || a.name === info.description);
  return { adapter, backend: backend ?? match?.backend ?? 'unknown', name: match?.name };
}

/** See AdapterInfo.hostVectorRegisters. */
async function hostVectorRegisters(): Promise<number> {
  const p = (globalThis as { process?: { platform?: string; arch?: string } }).process;
  if (!isNode() || p?.platform !== 'linux' || p.arch !== 'x64') return 0;
  try {
    const { readFileSync } = await import('node:fs');
    const flags = new Set(/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim().split(/\s+/) ?? []);
    return flags.has('avx512vl') ? 32 : flags.has('avx2') ? 16 : 0;
  } catch {
    return 0;
  }
}

function adapterInfo(adapter: GPUAdapter, backend: string, name?: string, vectorRegisters = 0): AdapterInfo {
  const i = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number; isFallbackAdapter?: boolean };
  return {
    name: name || i.description || i.device || i.vendor || 'unknown adapter',
    vendor: i.vendor,
    architecture: i.architecture,
    description: i.description,
    backend,
    isFallback: Boolean(i.isFallbackAdapter),
    subgroupMinSize: i.subgroupMinSize ?? 0,
    subgroupMaxSize: i.subgroupMaxSize ?? 0,
    hostVectorRegisters: vectorRegisters,
  };
}

/** Every limit the adapter reports, at the adapter's maximum. */
function maxLimits(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, unknown>;
  for (const key in limits) {
    const v = limits[key];
    if (typeof v === 'number') out[key] = v;
  }
  return out;
}

export interface GPUContext {
  readonly device: GPUDevice;
  readonly adapter: GPUAdapter;
  readonly info: AdapterInfo;
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  /** Throws the first error the device reported since the last check (validation, out of memory, loss). */
  checkErrors(): void;
  /** Forgets reported errors (consequences of one already thrown). */
  clearErrors(): void;
  /** True once the device is lost or destroyed. */
  readonly lost: boolean;
}

class Context implements GPUContext {
  private errors: Error[] = [];
  lost = false;

  constructor(
    readonly device: GPUDevice,
    readonly adapter: GPUAdapter,
    readonly info: AdapterInfo,
  ) {
    device.addEventListener('uncapturederror', (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.errors.push(new GPUValidationError(`GPU error: ${err.message.trim()}`));
    });
    void device.lost.then((info) => {
      this.lost = true;
      if (info.reason !== 'destroyed') this.errors.push(new DeviceLostError(`GPU device lost (${info.reason}): ${info.message}`));
    });
  }

  get features(): ReadonlySet<string> {
    return this.device.features as unknown as ReadonlySet<string>;
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  clearErrors(): void {
    this.errors.length = 0;
  }

  checkErrors(): void {
    const e = this.errors.shift();
    if (e) {
      this.errors.length = 0;
      throw e;
    }
  }
}

/** Picks an adapter by options and environment and opens a device with its maximum limits. */
export async function openGPU(opts: DeviceOptions = {}): Promise<GPUContext> {
  const { adapter, backend, name } = await requestAdapter(opts);
  const available = adapter.features as unknown as ReadonlySet<string>;
  const requested = opts.features ?? OPTIONAL_FEATURES;
  const missing = opts.features?.filter((f) => !available.has(f)) ?? [];
  if (missing.length) throw new AdapterError(`adapter '${adapterInfo(adapter, backend).name}' lacks features: ${missing.join(', ')}`);
  const requiredFeatures = requested.filter((f) => available.has(f));
  const descriptor: GPUDeviceDescriptor = { label: 'mpfgvc', requiredFeatures, requiredLimits: maxLimits(adapter) };
  const device = await (isNode() ? quietly(() => adapter.requestDevice(descriptor)) : adapter.requestDevice(descriptor));
  return new Context(device, adapter, adapterInfo(adapter, backend, name, await hostVectorRegisters()));
}
