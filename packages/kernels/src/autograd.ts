// Reverse-mode differentiation over the tape: every tensor produced by a recorded op carries the
// op's backward rule; backward() runs the rules reachable from the loss in reverse creation order,
// reduces broadcast gradients back to each input's shape (the one place this happens), accumulates
// gradients across uses, and frees each tape entry once its backward has run.
import { launchAccumulate, launchCopy, launchFill } from './ops/elementwise.js';
import { launchSum } from './ops/reduce.js';
import { type Node, type Shape, Tensor, empty, keep, noGrad, sameShape, shapeStr } from './tensor.js';

/** Sums `g` over the dims along which a tensor of `shape` was broadcast to g's shape. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  if (lead < 0) throw new Error(`sumTo: gradient ${shapeStr(g.shape)} has lower rank than ${shapeStr(shape)}`);
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead) axes.push(i);
    else if (shape[i - lead] === 1 && g.shape[i] !== 1) axes.push(i);
    else if (shape[i - lead] !== g.shape[i]) throw new Error(`sumTo: gradient ${shapeStr(g.shape)} does not broadcast from ${shapeStr(shape)}`);
  }
  const summed = launchSum(g, axes, true);
  const out = summed.view(shape, contiguousOf(shape), summed.offset);
  summed.dispose();
  return out;
}

function contiguousOf(shape: Shape): number[] {
  const s: number[] = [];
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** A contiguous tensor that is the only handle on its storage: safe to accumulate into in place. */
function owned(t: Tensor): boolean {
  return t.isContiguous() && !t.storage.shared;
}

function freeNode(node: Node): void {
  for (const t of node.saved) t.unpin();
  node.saved = [];
}

/** Adds `g` (consumed) into the gradient slot of leaf `t`. */
function accumulateLeaf(t: Tensor, g: Tensor): void {
  const slot = t.gradSlot;
  if (!t.grad && slot) {
    // A parameter packed into an optimiser's arena: its first gradient is copied into its slot.
    const gc = g.isContiguous() ? g : launchCopy(g);
    t.device.copy(gc.buffer, gc.offset * 4, slot.buffer, slot.offset * 4, slot.size * 4);
    if (gc !== g) gc.dispose();
    g.dispose();
    t.grad = keep(slot.view(slot.shape, slot.strides, slot.offset));
    return;
  }
  if (!t.grad) {
    t.grad = keep(owned(g) ? g : launchCopy(g));
    if (t.grad !== g) g.dispose();
    return;
  }
  const gc = g.isContiguous() && g.storage !== t.grad.storage ? g : launchCopy(g);
  launchAccumulate(t.grad, gc);
  if (gc !== g) gc.dispose();
  g.dispose();
}

/** Gradients of `loss` with respect to every tensor that requires one, accumulated into `.grad`. */
export function backward(loss: Tensor, gradOutput?: Tensor): void {
  if (!loss.requiresGrad) throw new Error(`backward: ${loss} does not require grad (nothing on the tape leads to it)`);
  if (!gradOutput && loss.size !== 1) throw new Error(`backward: ${loss} is not a scalar; pass the output gradient`);
  noGrad(() => {
    // Collect the tape entries reachable from the loss.
    const order: { node: Node; out: Tensor }[] = [];
    const seen = new Set<Node>();
    const stack: Tensor[] = [loss];
    while (stack.length) {
      const t = stack.pop()!;
      const node = t.node;
      if (!node || seen.has(node)) continue;
      seen.add(node);
      order.push({ node, out: t });
      for (const i of node.inputs) if (i) stack.push(i);
    }
    order.sort((a, b) => b.node.seq - a.node.seq);

    const grads = new Map<Tensor, Tensor>();
    let seed: Tensor;
    if (gradOutput) {
      if (!sameShape(gradOutput.shape, loss.shape)) throw new Error(`backward: output gradient ${shapeStr(gradOutput.shape)} for ${loss}`);
      seed = gradOutput.view(gradOutput.shape, gradOutput.strides, gradOutput.offset);
    } else {
      seed = empty(loss.device, loss.shape, 'f32', 'grad_seed');
      launchFill(seed, 1);
    }
    if (loss.node) grads.set(loss, seed);
    else accumulateLeaf(loss, seed);

    for (const { node, out } of order) {
      const g = grads.get(out);
      grads.delete(out);
      if (!g) {
        freeNode(node);
        out.node = null;
        continue;
      }
      if (out.retainGrad) accumulateLeaf(out, launchCopy(g));
      // What each input has gathered so far, offered for in-place accumulation (see BackwardContext).
      const offered = new Map<number, Tensor>();
      const pending = (k: number): Tensor | undefined => {
        const input = node.inputs[k];
        const prev = input?.node ? grads.get(input) : undefined;
        if (!prev || !owned(prev) || !sameShape(prev.shape, input!.shape)) return undefined;
        offered.set(k, prev);
        return prev;
      };
      const raw = node.backward(g, { needs: node.inputs.map((input) => input !== null), pending });
      freeNode(node);
      out.node = null;
      const handed = new Set<Tensor>();
      node.inputs.forEach((input, k) => {
        let gi = raw[k];
        if (!input || !gi) {
          if (gi && gi !== g && !handed.has(gi)) gi.dispose();
          return;
        }
        // The rule added into the pending gradient itself: it is already in place.
        if (gi === offered.get(k)) return;
        // A rule may hand back its output gradient or the same tensor twice: give each use its own handle.
        if (gi === g || handed.has(gi)) gi = gi.view(gi.shape, gi.strides, gi.offset);
        handed.add(gi);
        const reduced = sumTo(gi, input.shape);
        if (reduced !== gi) gi.dispose();
        if (!sameShape(reduced.shape, input.shape)) {
          throw new Error(`backward of ${node.op}: gradient ${shapeStr(reduced.shape)} for input ${shapeStr(input.shape)}`);
        }
        if (!input.node) {
          accumulateLeaf(input, reduced);
          return;
        }
        const prev = grads.get(input);
        if (!prev) {
          grads.set(input, reduced);
          return;
        }
        const acc = owned(prev) ? prev : launchCopy(prev);
        if (acc !== prev) prev.dispose();
        const rc = reduced.isContiguous() && reduced.storage !== acc.storage ? reduced : launchCopy(reduced);
        launchAccumulate(acc, rc);
        if (rc !== reduced) rc.dispose();
        reduced.dispose();
        grads.set(input, acc);
      });
      g.dispose();
    }
    for (const g of grads.values()) g.dispose();
  });
}

/** Frees the tape entries reachable from `t` without computing gradients. */
export function releaseGraph(t: Tensor): void {
  const stack: Tensor[] = [t];
  while (stack.length) {
    const x = stack.pop()!;
    const node = x.node;
    if (!node) continue;
    x.node = null;
    freeNode(node);
    for (const i of node.inputs) if (i) stack.push(i);
  }
}

/** Drops the gradients of `params` (their buffers go back to the pool). */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
