// The engine's handle on the GPU: pipelines cached by kernel key, bind groups reused, one shared
// command encoder and compute pass that every op records into, one submit per flush, read-back only
// when asked.
import { DeviceLostError, type DeviceOptions, type GPUContext, GPUValidationError, openGPU } from './device.js';
import { type KernelSpec, kernelKey, kernelSource, packParams, paramBytes } from './kernel.js';
import { BufferPool, bufferId } from './pool.js';
import { WaitPacer, signDispatch } from './wait.js';
import { isCpuAdapter } from './ops/adapter.js';

const UNIFORM_CHUNK = 64 * 1024;
/**
 * A long recording goes to the queue in pieces of this many dispatches, so that the GPU starts on
 * the first while the host records the rest (a training step records hundreds). Every piece of a
 * repeated step is the same work, so the wait pacer (wait.ts) learns each one.
 */
const SUBMIT_EVERY = 64;

interface CachedPipeline {
  key: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  spec: KernelSpec;
  paramBytes: number;
  /** Order of compilation: names the pipeline in a submit's signature (wait.ts). */
  id: number;
}

/** A buffer binding: the whole buffer. Kernels address views through element offsets in their params. */
export type BufferArg = GPUBuffer;

function envFlag(key: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env?.[key] || undefined;
}

class UniformArena {
  private chunks: { buffer: GPUBuffer; data: ArrayBuffer; view: DataView; used: number }[] = [];
  private current = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly align: number,
    private readonly onCreate: (bytes: number) => void,
  ) {}

  private createChunk(): GPUBuffer {
    this.onCreate(UNIFORM_CHUNK);
    return this.device.createBuffer({ size: UNIFORM_CHUNK, usage: 0x40 /* UNIFORM */ | 0x8 /* COPY_DST */, label: `params#${this.current}` });
  }

  /** Reserves `bytes` of uniform data; returns the chunk buffer, the view to write and the offset. */
  alloc(bytes: number): { buffer: GPUBuffer; view: DataView; offset: number } {
    for (;;) {
      let chunk = this.chunks[this.current];
      if (!chunk) {
        const data = new ArrayBuffer(UNIFORM_CHUNK);
        chunk = {
          buffer: this.createChunk(),
          data,
          view: new DataView(data),
          used: 0,
        };
        this.chunks.push(chunk);
      }
      const offset = Math.ceil(chunk.used / this.align) * this.align;
      if (offset + bytes <= UNIFORM_CHUNK) {
        chunk.used = offset + bytes;
        return { buffer: chunk.buffer, view: chunk.view, offset };
      }
      this.current++;
    }
  }

  /** Uploads what was written since the last flush; writes are ordered before the submit that follows. */
  flush(queue: GPUQueue): void {
    for (let i = 0; i <= this.current && i < this.chunks.length; i++) {
      const c = this.chunks[i]!;
      if (c.used > 0) queue.writeBuffer(c.buffer, 0, c.data, 0, Math.ceil(c.used / 4) * 4);
      c.used = 0;
    }
    this.current = 0;
  }
}

export interface DispatchCounts {
  dispatches: number;
  submits: number;
  pipelines: number;
  bindGroups: number;
  /** GPU buffers created (pooled storage, uniform chunks, upload and read-back staging) and their bytes. */
  buffers: number;
  bufferBytes: number;
}

/** GPU time of one kernel (name and variant) over the dispatches of a profiled call. */
export interface KernelTime {
  kernel: string;
  dispatches: number;
  ms: number;
}

/** What a profiled call returns: per-kernel GPU time, slowest first. */
export interface Profile {
  kernels: KernelTime[];
  /** Sum of the kernels' times (each dispatch timed alone, so no overlap is counted). */
  totalMs: number;
  /** Dispatches past the query set's capacity, recorded but not timed. */
  untimed: number;
}

interface Profiling {
  querySet: GPUQuerySet;
  capacity: number;
  labels: string[];
  untimed: number;
}

export class Device {
  readonly gpu: GPUDevice;
  readonly pool: BufferPool;
  private pipelines = new Map<string, CachedPipeline>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private uniforms: UniformArena;
  private pendingChecks: Promise<void>[] = [];
  private afterSubmit: (() => void)[] = [];
  private readonly printWgsl = envFlag('MPFGVC_PRINT_WGSL');
  private readonly debug = envFlag('MPFGVC_DEBUG') === '1';
  readonly counts: DispatchCounts = { dispatches: 0, submits: 0, pipelines: 0, bindGroups: 0, buffers: 0, bufferBytes: 0 };
  private profiling: Profiling | null = null;
  private readonly pacer: WaitPacer;
  /** Signature of the dispatches recorded since the last submit (see wait.ts). */
  private signature = 0;
  /** Dispatches recorded since the last submit. */
  private recorded = 0;

  constructor(readonly ctx: GPUContext) {
    this.gpu = ctx.device;
    const maxBinding = Math.min(ctx.limits.maxBufferSize, ctx.limits.maxStorageBufferBindingSize);
    this.pool = new BufferPool(ctx.device, maxBinding, () => this.bindGroups.clear(), (bytes) => this.created(bytes));
    this.uniforms = new UniformArena(ctx.device, ctx.limits.minUniformBufferOffsetAlignment, (bytes) => this.created(bytes));
    this.pacer = new WaitPacer(ctx.info.backend !== 'browser' && isCpuAdapter(this));
  }

  /**
   * Whether waits on the GPU are paced: they sleep before they ask, and Dawn polls gently while
   * they ask (see wait.ts). On by default with Dawn in Node on a CPU adapter, whose threads want
   * the core that Dawn's bindings keep busy polling while a wait is pending; off in browsers
   * (which do not poll) and on GPUs (where a polling core costs the GPU nothing and a sleep that
   * overshoots would).
   */
  get sleepWhileWaiting(): boolean {
    return this.pacer.sleepFirst;
  }
  set sleepWhileWaiting(on: boolean) {
    this.pacer.sleepFirst = on;
  }

  get info() {
    return this.ctx.info;
  }

  /** Counts a GPU buffer the runtime created (see DispatchCounts). */
  private created(bytes: number): void {
    this.counts.buffers++;
    this.counts.bufferBytes += bytes;
  }

  get features(): ReadonlySet<string> {
    return this.ctx.features;
  }

  get limits(): GPUSupportedLimits {
    return this.ctx.limits;
  }

  has(feature: GPUFeatureName): boolean {
    return this.ctx.features.has(feature);
  }

  /** The cached pipeline of a kernel, compiled on first use inside a validation error scope. */
  pipeline(spec: KernelSpec): CachedPipeline {
    const key = kernelKey(spec);
    const hit = this.pipelines.get(key);
    if (hit) return hit;
    const code = kernelSource(spec);
    if (this.printWgsl && (this.printWgsl === '*' || this.printWgsl === spec.name || this.printWgsl === key)) {
      process.stderr.write(`// ---- WGSL of kernel ${key} ----\n${code}\n`);
    }
    const dev = this.gpu;
    dev.pushErrorScope('validation');
    const module = dev.createShaderModule({ code, label: key });
    const entries: GPUBindGroupLayoutEntry[] = spec.storage.map((b, i) => ({
      binding: i,
      visibility: 4 /* COMPUTE */,
      buffer: { type: b.access === 'read' ? 'read-only-storage' : 'storage' },
    }));
    const bytes = paramBytes(spec);
    entries.push({ binding: spec.storage.length, visibility: 4, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: bytes } });
    const layout = dev.createBindGroupLayout({ entries, label: key });
    const pipeline = dev.createComputePipeline({
      label: key,
      layout: dev.createPipelineLayout({ bindGroupLayouts: [layout], label: key }),
      compute: { module, entryPoint: 'main' },
    });
    const check = Promise.all([dev.popErrorScope(), module.getCompilationInfo()]).then(([err, info]) => {
      if (!err) return;
      const msgs = info.messages
        .filter((m) => m.type === 'error')
        .map((m) => `line ${m.lineNum}:${m.linePos}: ${m.message}`)
        .join('; ');
      throw new GPUValidationError(`kernel '${key}' failed to compile: ${msgs || err.message.trim()} (MPFGVC_PRINT_WGSL=${spec.name} prints its WGSL)`);
    });
    this.pendingChecks.push(check);
    check.catch(() => undefined);
    const entry: CachedPipeline = { key, pipeline, layout, spec, paramBytes: bytes, id: this.pipelines.size };
    this.pipelines.set(key, entry);
    this.counts.pipelines++;
    return entry;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.encoder ??= this.gpu.createCommandEncoder({ label: 'step' });
      this.pass = this.encoder.beginComputePass({ label: 'ops' });
    }
    return this.pass;
  }

  private commandEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder ??= this.gpu.createCommandEncoder({ label: 'step' });
    return this.encoder;
  }

  /** Records one dispatch of `spec` into the shared compute pass. */
  dispatch(spec: KernelSpec, buffers: readonly BufferArg[], params: readonly number[], workgroups: readonly [number, number?, number?]): void {
    if (buffers.length !== spec.storage.length) {
      throw new Error(`kernel ${kernelKey(spec)}: expected ${spec.storage.length} buffers (${spec.storage.map((b) => b.name).join(', ')}), got ${buffers.length}`);
    }
    const [x, y = 1, z = 1] = workgroups;
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxDim || y > maxDim || z > maxDim) {
      throw new Error(`kernel ${kernelKey(spec)}: dispatch ${x}x${y}x${z} exceeds maxComputeWorkgroupsPerDimension (${maxDim})`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    const pl = this.pipeline(spec);
    const u = this.uniforms.alloc(pl.paramBytes);
    packParams(spec, params, u.view, u.offset);
    let key = `${pl.key}|${bufferId(u.buffer)}`;
    for (const b of buffers) key += `,${bufferId(b)}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({ binding: i, resource: { buffer } }));
      entries.push({ binding: buffers.length, resource: { buffer: u.buffer, size: pl.paramBytes } });
      bg = this.gpu.createBindGroup({ layout: pl.layout, entries, label: pl.key });
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      this.bindGroups.set(key, bg);
      this.counts.bindGroups++;
    }
    if (this.debug) this.gpu.pushErrorScope('validation');
    const timed = this.profiling && this.profiling.labels.length < this.profiling.capacity ? this.profiling : null;
    if (this.profiling && !timed) this.profiling.untimed++;
    const pass = timed ? this.timedPass(timed, pl.key) : this.computePass();
    pass.setPipeline(pl.pipeline);
    pass.setBindGroup(0, bg, [u.offset]);
    pass.dispatchWorkgroups(x, y, z);
    if (timed) pass.end();
    this.counts.dispatches++;
    this.signature = signDispatch(this.signature, pl.id, x, y, z);
    if (++this.recorded >= SUBMIT_EVERY) this.flush();
    if (this.debug) {
      // One submit per dispatch, so that an error names the kernel that caused it.
      this.flush();
      const check = this.gpu.popErrorScope().then((err) => {
        if (err) throw new GPUValidationError(`kernel '${pl.key}': ${err.message.trim()}`);
      });
      check.catch(() => undefined);
      this.pendingChecks.push(check);
    }
  }

  /** A compute pass of its own for one profiled dispatch, with timestamps at its beginning and end. */
  private timedPass(p: Profiling, label: string): GPUComputePassEncoder {
    const i = p.labels.push(label) - 1;
    return this.commandEncoder().beginComputePass({
      label: `profile:${label}`,
      timestampWrites: { querySet: p.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
    });
  }

  /**
   * Runs `fn` with every dispatch it records in a timed pass of its own, and returns the GPU time
   * per kernel (name and variant). The passes serialise what the shared pass may overlap, so the
   * sum need not equal the untimed run's GPU time; it says where the time goes. At most `capacity`
   * dispatches are timed (WebGPU caps a query set at 4096 timestamps). Needs 'timestamp-query'.
   */
  async profile(fn: () => void | Promise<void>, capacity = 2048): Promise<Profile> {
    if (!this.has('timestamp-query')) throw new Error("profile: this adapter has no 'timestamp-query' feature");
    if (!(Number.isInteger(capacity) && capacity >= 1 && capacity <= 2048)) throw new Error(`profile: capacity ${capacity} must be an integer in [1, 2048]`);
    if (this.profiling) throw new Error('profile: already profiling (profiles do not nest)');
    await this.sync();
    const querySet = this.gpu.createQuerySet({ type: 'timestamp', count: 2 * capacity, label: 'profile' });
    const p: Profiling = { querySet, capacity, labels: [], untimed: 0 };
    this.profiling = p;
    try {
      await fn();
    } catch (e) {
      // What fn recorded still writes into the query set: it goes once that is submitted.
      this.afterSubmit.push(() => querySet.destroy());
      throw e;
    } finally {
      this.profiling = null;
    }
    const stamps = p.labels.length > 0 ? await this.readTimestamps(querySet, 2 * p.labels.length) : new BigInt64Array(0);
    querySet.destroy();
    const byKernel = new Map<string, KernelTime>();
    p.labels.forEach((kernel, i) => {
      const t = byKernel.get(kernel) ?? { kernel, dispatches: 0, ms: 0 };
      t.dispatches++;
      t.ms += Number(stamps[2 * i + 1]! - stamps[2 * i]!) / 1e6;
      byKernel.set(kernel, t);
    });
    const kernels = [...byKernel.values()].sort((a, b) => b.ms - a.ms);
    return { kernels, totalMs: kernels.reduce((a, k) => a + k.ms, 0), untimed: p.untimed };
  }

  /** Records a buffer-to-buffer copy, ordered with the dispatches around it. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (bytes === 0) return;
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Writes host data into `dst` at the point of the command stream where this is called. */
  upload(dst: GPUBuffer, dstOffset: number, data: ArrayBufferView): void {
    const bytes = Math.ceil(data.byteLength / 4) * 4;
    if (bytes === 0) return;
    if (!this.encoder) {
      // Nothing recorded yet: the queue orders this write before the next submit.
      const src = new Uint8Array(bytes);
      src.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.gpu.queue.writeBuffer(dst, dstOffset, src);
      return;
    }
    const staging = this.gpu.createBuffer({ size: bytes, usage: 0x4 /* COPY_SRC */, mappedAtCreation: true, label: `upload:${dst.label}` });
    this.created(bytes);
    new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    staging.unmap();
    this.commandEncoder().copyBufferToBuffer(staging, 0, dst, dstOffset, bytes);
    this.afterSubmit.push(() => staging.destroy());
  }

  /**
   * Records a GPU timestamp at this point of the command stream into `querySet[index]` (devices
   * with 'timestamp-query'): an empty compute pass whose beginning is timed.
   */
  timestamp(querySet: GPUQuerySet, index: number): void {
    const pass = this.commandEncoder().beginComputePass({ label: 'timestamp', timestampWrites: { querySet, beginningOfPassWriteIndex: index } });
    pass.end();
  }

  /** The first `count` timestamps of `querySet`, in nanoseconds (flushes). */
  async readTimestamps(querySet: GPUQuerySet, count: number): Promise<BigInt64Array> {
    const resolved = this.gpu.createBuffer({ size: 8 * count, usage: 0x200 /* QUERY_RESOLVE */ | 0x4 /* COPY_SRC */, label: 'timestamps' });
    this.commandEncoder().resolveQuerySet(querySet, 0, count, resolved, 0);
    const data = await this.read(resolved, 0, 8 * count);
    resolved.destroy();
    return new BigInt64Array(data);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    const cmd = this.encoder.finish({ label: 'step' });
    this.encoder = null;
    this.uniforms.flush(this.gpu.queue);
    this.gpu.queue.submit([cmd]);
    this.counts.submits++;
    this.pacer.submitted(this.signature);
    this.signature = 0;
    this.recorded = 0;
    for (const f of this.afterSubmit.splice(0)) f();
  }

  /** Flushes, waits for the GPU, and throws any error it reported. */
  async sync(): Promise<void> {
    this.flush();
    await this.pacer.wait(() => this.gpu.queue.onSubmittedWorkDone());
    await this.throwPending();
  }

  private async throwPending(): Promise<void> {
    const checks = this.pendingChecks.splice(0);
    try {
      await Promise.all(checks);
    } catch (e) {
      // The submits that used the broken pipeline report it again; the first cause is the one to show.
      await new Promise((r) => setTimeout(r, 10));
      this.ctx.clearErrors();
      throw e;
    }
    this.ctx.checkErrors();
  }

  /** Copies `bytes` from `src` back to the host. Flushes what was recorded before. */
  async read(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.gpu.createBuffer({ size: Math.max(4, size), usage: 0x1 /* MAP_READ */ | 0x8 /* COPY_DST */, label: `read:${src.label}` });
    this.created(Math.max(4, size));
    if (size > 0) this.commandEncoder().copyBufferToBuffer(src, offset, staging, 0, size);
    this.flush();
    try {
      await this.pacer.wait(() => staging.mapAsync(1 /* READ */));
    } catch (e) {
      await this.throwPending();
      // A lost (or destroyed) device rejects every map with a bare AbortError: name the cause.
      const lost = await Promise.race([this.gpu.lost, new Promise<undefined>((r) => setTimeout(() => r(undefined), 100))]);
      if (lost) throw new DeviceLostError(`GPU device lost (${lost.reason}${lost.message ? `: ${lost.message.trim()}` : ''})`);
      throw e;
    }
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    await this.throwPending();
    return out;
  }

  /** Releases every free pooled buffer (flushes first: recorded commands may still use them). */
  trim(): void {
    this.flush();
    this.pool.trim();
  }

  destroy(): void {
    this.flush();
    this.gpu.destroy();
  }
}

/** Opens a device (adapter chosen by options and environment) ready to run kernels. */
export async function requestDevice(opts: DeviceOptions = {}): Promise<Device> {
  return new Device(await openGPU(opts));
}
