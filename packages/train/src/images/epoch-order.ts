// The order samples are visited in: a seeded permutation per epoch, cut into batches. A position
// (epoch, index) says how far into an epoch's order a run has got; saved in a checkpoint, it
// makes a resumed run continue with exactly the batches the interrupted one would have seen.
import { orderRng } from './streams.js';

export interface EpochPosition {
  epoch: number;
  /** Samples of this epoch's order already consumed. */
  index: number;
}

export interface EpochOrderOptions {
  seed: number;
  /** Shuffle each epoch (training); false keeps dataset order (evaluation). Default true. */
  shuffle?: boolean;
  /** Drop the last, incomplete batch of each epoch. Default false. */
  dropLast?: boolean;
}

export class EpochOrder {
  readonly seed: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  private cached: { epoch: number; order: Uint32Array } | undefined;

  constructor(
    readonly size: number,
    readonly batchSize: number,
    opts: EpochOrderOptions,
  ) {
    if (!Number.isInteger(size) || size < 0) throw new Error(`EpochOrder: size must be a non-negative integer, got ${size}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`EpochOrder: batchSize must be a positive integer, got ${batchSize}`);
    this.seed = opts.seed;
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
  }

  /** Samples per epoch that end up in batches. */
  get epochLength(): number {
    return this.dropLast ? Math.floor(this.size / this.batchSize) * this.batchSize : this.size;
  }

  get batchesPerEpoch(): number {
    return Math.ceil(this.epochLength / this.batchSize);
  }

  /** Sample indices in the order epoch `epoch` visits them (Fisher-Yates on the epoch's stream). */
  permutation(epoch: number): Uint32Array {
    if (this.cached?.epoch === epoch) return this.cached.order;
    const order = new Uint32Array(this.size);
    for (let i = 0; i < order.length; i++) order[i] = i;
    if (this.shuffle) {
      const rng = orderRng(this.seed, epoch);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rng.next() * (i + 1));
        const t = order[i]!;
        order[i] = order[j]!;
        order[j] = t;
      }
    }
    this.cached = { epoch, order };
    return order;
  }

  /** The batch starting at `pos` and the position after it (the next epoch's start at the end). */
  batchAt(pos: EpochPosition): { ids: Uint32Array; next: EpochPosition } {
    const { epoch, index } = pos;
    if (!Number.isInteger(epoch) || epoch < 0 || !Number.isInteger(index) || index < 0 || index >= this.epochLength) {
      throw new Error(`EpochOrder: position (epoch ${epoch}, index ${index}) is outside an epoch of ${this.epochLength} samples`);
    }
    const end = Math.min(index + this.batchSize, this.epochLength);
    const ids = this.permutation(epoch).slice(index, end);
    return { ids, next: end === this.epochLength ? { epoch: epoch + 1, index: 0 } : { epoch, index: end } };
  }

  /** Batches from `from` up to (not including) the start of epoch `untilEpoch`. */
  *batches(from: EpochPosition, untilEpoch: number): Generator<{ position: EpochPosition; ids: Uint32Array; next: EpochPosition }> {
    if (this.epochLength === 0) return;
    let pos = from;
    while (pos.epoch < untilEpoch) {
      const { ids, next } = this.batchAt(pos);
      yield { position: pos, ids, next };
      pos = next;
    }
  }
}
