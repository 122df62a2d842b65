// Differentiable softmax and log-softmax over the last axis; the tape keeps only the output.
import { type SoftmaxKind, launchSoftmax, launchSoftmaxBackward } from '../ops/softmax.js';
import { type Tensor, record } from '../tensor.js';

function softmaxOp(kind: SoftmaxKind, x: Tensor): Tensor {
  const y = launchSoftmax(kind, x);
  return record(kind, y, [x], (g) => [launchSoftmaxBackward(kind, g, y)], [y]);
}

export function softmax(x: Tensor): Tensor {
  return softmaxOp('softmax', x);
}

export function logSoftmax(x: Tensor): Tensor {
  return softmaxOp('log_softmax', x);
}
