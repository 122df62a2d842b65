// Independent random streams derived from the run's seed. Each stream depends only on its key
// (what it is for, the seed, the epoch, the sample), never on which worker draws it or when, so
// batches are identical for any worker count and completion order, and a resumed run redraws the
// same order and crops without replaying the generator.
import { Rng } from '@mpfgvc/kernels';

const AUGMENT = 0x61756731;
const ORDER = 0x6f726472;

function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A generator whose four state words hash the key through different lanes (128 bits, not 32). */
function derivedRng(key: number[]): Rng {
  const state: number[] = [];
  for (let lane = 0; lane < 4; lane++) {
    let h = fmix32(Math.imul(lane + 1, 0x9e3779b9) >>> 0);
    for (const k of key) h = fmix32((h ^ k) >>> 0);
    state.push(h);
  }
  // xoshiro's one forbidden state.
  if (!state.some((w) => w !== 0)) state[0] = 1;
  const rng = new Rng(0);
  rng.setState(state);
  return rng;
}

/** The augmentation randomness of one sample in one epoch. */
export function sampleRng(seed: number, epoch: number, index: number): Rng {
  return derivedRng([AUGMENT, seed, epoch, index]);
}

/** The shuffling randomness of one epoch. */
export function orderRng(seed: number, epoch: number): Rng {
  return derivedRng([ORDER, seed, epoch]);
}
