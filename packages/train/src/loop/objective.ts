// What one batch costs in a stage, and how a step's losses travel back to the host. The losses are
// the model's (MPFGVC.stageOneLoss, stageTwoLoss), by name; the loop only feeds them the batch:
// images, or in stage 2 the image embeddings it cached once (the image side is frozen there). A
// step's losses go to the host as one small vector, read once per optimiser step and named again
// when they arrive.
import { type Tensor, add, backward, concat, keep, noGrad, reshape, scale, scope, tensor } from '@mpfgvc/kernels';
import type { MPFGVC, StageLosses } from '@mpfgvc/model';
import type { DataBatch } from './data.js';

/** One batch's named losses (on the tape: backward runs on `total`). */
export type Objective = (batch: DataBatch) => StageLosses;

function images(model: MPFGVC, b: DataBatch): Tensor {
  const S = model.config.vision.imageSize;
  return tensor(model.device, b.rows, [b.size, 3, S, S]);
}

/**
 * Stage 1: L_1 = L_v + L_i2t on the batch's images (L_v alone for the ViT-only model). `text` is T
 * where it is a constant (fixed prompts); with DaTP the model computes it on the tape.
 */
export function stageOneObjective(model: MPFGVC, labelSmoothing: number, text: Tensor | undefined): Objective {
  return (b) => model.stageOneLoss(images(model, b), b.labels, { labelSmoothing, ...(text ? { text } : {}) });
}

/** Stage 2: L_2 on the batch's images, or on rows that are their embeddings V (cached once). */
export function stageTwoObjective(model: MPFGVC, labelSmoothing: number, text: Tensor, rows: 'images' | 'embeddings'): Objective {
  if (rows === 'embeddings') return (b) => model.stageTwoLoss({ joint: tensor(model.device, b.rows, [b.size, model.config.embedDim]) }, b.labels, text, { labelSmoothing });
  return (b) => model.stageTwoLoss({ images: images(model, b) }, b.labels, text, { labelSmoothing });
}

/** The losses a step reports besides the total, in the order they follow it in the loss vector. */
const TERMS = ['vision', 'text', 'vlfm'] as const;

/** Where each named loss sits in a loss vector. */
export type LossSlots = { total: number } & Partial<Record<(typeof TERMS)[number], number>>;

/** Losses on the GPU, not yet read: (n) values and the names of their slots. */
export interface LossVector {
  values: Tensor;
  slots: LossSlots;
}

/** A step's losses as read back, by name, and the global gradient norm before clipping (when clipping is on). */
export type StepLosses = { total: number; gradNorm?: number } & Partial<Record<(typeof TERMS)[number], number>>;

/** The total first, then each loss it is made of; a loss that is the total itself (an objective of one loss) shares its slot. */
function layout(losses: StageLosses): { parts: Tensor[]; slots: LossSlots } {
  const parts = [losses.total];
  const slots: LossSlots = { total: 0 };
  for (const name of TERMS) {
    const t = losses[name];
    if (!t) continue;
    if (t !== losses.total) parts.push(t);
    slots[name] = t === losses.total ? 0 : parts.length - 1;
  }
  return { parts, slots };
}

/**
 * One batch's forward and backward; its gradients (which accumulate) and its losses are divided by
 * `groupSize`, the batches of the optimiser step, so that the group's sum is its mean.
 */
export function microStep(objective: Objective, b: DataBatch, groupSize: number): LossVector {
  return scope(() => {
    const losses = objective(b);
    backward(groupSize === 1 ? losses.total : scale(losses.total, 1 / groupSize));
    const { parts, slots } = layout(losses);
    return { values: keep(noGrad(() => scale(concat(parts.map((p) => reshape(p, [1])), 0), 1 / groupSize))), slots };
  });
}

/** The group's losses so far plus one more batch's; both are disposed, the sum is kept. */
export function addLosses(sum: LossVector | undefined, more: LossVector): LossVector {
  if (!sum) return more;
  const values = keep(noGrad(() => add(sum.values, more.values)));
  sum.values.dispose();
  more.values.dispose();
  return { values, slots: sum.slots };
}

/**
 * Starts the one read of a step: its losses, followed by the gradient norm `norm` when clipping
 * computed one. The tensors are disposed (the vector once its read has finished).
 */
export function readLosses(losses: LossVector, norm: Tensor | undefined): Promise<Float32Array> {
  const done = losses.values;
  // In a scope: the reshaped view of the norm holds its buffer until it is disposed too.
  const vec = norm ? keep(scope(() => noGrad(() => concat([done, reshape(norm, [1])], 0)))) : done;
  if (norm) {
    norm.dispose();
    done.dispose();
  }
  const values = vec.read().then((x) => x as Float32Array);
  values.finally(() => vec.dispose()).catch(() => undefined);
  return values;
}

/** The values read by readLosses, by name (`clipped`: the last one is the gradient norm). */
export function nameLosses(values: Float32Array, slots: LossSlots, clipped: boolean): StepLosses {
  const named: StepLosses = { total: values[slots.total]! };
  for (const name of TERMS) {
    const slot = slots[name];
    if (slot !== undefined) named[name] = values[slot]!;
  }
  if (clipped) named.gradNorm = values[values.length - 1]!;
  return named;
}
