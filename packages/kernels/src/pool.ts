// GPU buffers pooled by size class. Released buffers are reused by later allocations of the same
// class; nothing is destroyed until `trim()`, so GPU memory in use settles after the first step.

const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x4 /* COPY_SRC */ | 0x8; /* COPY_DST */

/** Size classes: four per power of two above 256 bytes, so rounding wastes at most 25%. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 16) * 16);
  const pow = 2 ** Math.floor(Math.log2(b));
  const step = Math.max(16, pow / 4);
  return Math.ceil(b / step) * step;
}

export interface PoolStats {
  /** Bytes in buffers currently handed out. */
  inUse: number;
  /** Highest `inUse` since the pool was made or `resetPeak()` was called. */
  peakInUse: number;
  /** Bytes in buffers created by the pool (handed out + free). */
  allocated: number;
  buffers: number;
  free: number;
}

let nextBufferId = 1;
const bufferIds = new WeakMap<GPUBuffer, number>();

/** A small stable integer per buffer, used in bind-group cache keys. */
export function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) {
    id = nextBufferId++;
    bufferIds.set(b, id);
  }
  return id;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private sizes = new Map<GPUBuffer, number>();
  private inUseBytes = 0;
  private peakBytes = 0;
  private allocatedBytes = 0;
  private freeCount = 0;

  /**
   * @param maxBytes the largest buffer a kernel can bind whole (the device's
   *   min(maxBufferSize, maxStorageBufferBindingSize)): kernels bind whole buffers.
   */
  constructor(
    private readonly device: GPUDevice,
    private readonly maxBytes: number,
    private readonly onDestroy: () => void,
    private readonly onCreate: (bytes: number) => void = () => undefined,
  ) {}

  acquire(bytes: number, label: string): GPUBuffer {
    if (bytes > this.maxBytes) {
      throw new Error(
        `${label}: a tensor of ${bytes} bytes exceeds the largest storage binding this adapter allows (${this.maxBytes} bytes); use a smaller batch or size`,
      );
    }
    const size = Math.min(sizeClass(bytes), Math.floor(this.maxBytes / 16) * 16);
    const list = this.free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.freeCount--;
    } else {
      buf = this.device.createBuffer({ size, usage: STORAGE_USAGE, label });
      this.onCreate(size);
      this.sizes.set(buf, size);
      this.allocatedBytes += size;
    }
    buf.label = label;
    this.inUseBytes += size;
    if (this.inUseBytes > this.peakBytes) this.peakBytes = this.inUseBytes;
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) throw new Error(`buffer '${buf.label}' does not belong to this pool`);
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.freeCount++;
    this.inUseBytes -= size;
  }

  /** Destroys every free buffer (e.g. between runs with different shapes). */
  trim(): void {
    if (this.freeCount === 0) return;
    for (const list of this.free.values()) {
      for (const b of list) {
        this.allocatedBytes -= this.sizes.get(b)!;
        this.sizes.delete(b);
        b.destroy();
      }
    }
    this.free.clear();
    this.freeCount = 0;
    this.onDestroy();
  }

  resetPeak(): void {
    this.peakBytes = this.inUseBytes;
  }

  stats(): PoolStats {
    return { inUse: this.inUseBytes, peakInUse: this.peakBytes, allocated: this.allocatedBytes, buffers: this.sizes.size, free: this.freeCount };
  }
}
