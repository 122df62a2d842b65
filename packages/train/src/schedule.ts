// The learning rate of every optimiser step: linear warm-up from base/W to base over the first W
// steps, then a half cosine from base down to minLr at the stage's last step. A pure function of
// the step, so a resumed run needs nothing but its step count to continue the schedule.

export interface Schedule {
  /** Peak learning rate, reached at the end of warm-up. */
  base: number;
  /** Warm-up steps W (0: start at base). */
  warmup: number;
  /** Optimiser steps in the stage. */
  total: number;
  /** Learning rate at the last step. */
  minLr: number;
}

export function validateSchedule(s: Schedule): void {
  if (!(Number.isFinite(s.base) && s.base >= 0)) throw new Error(`schedule: lr must be a non-negative number, got ${s.base}`);
  if (!(Number.isFinite(s.minLr) && s.minLr >= 0 && s.minLr <= s.base)) throw new Error(`schedule: minLr must be in [0, lr = ${s.base}], got ${s.minLr}`);
  if (!(Number.isInteger(s.total) && s.total >= 1)) throw new Error(`schedule: total steps must be a positive integer, got ${s.total}`);
  if (!(Number.isInteger(s.warmup) && s.warmup >= 0 && s.warmup <= s.total)) throw new Error(`schedule: warm-up steps must be an integer in [0, ${s.total}], got ${s.warmup}`);
}

/** The learning rate of step `step` (0-based) of the stage. */
export function learningRate(s: Schedule, step: number): number {
  if (step < s.warmup) return (s.base * (step + 1)) / s.warmup;
  const span = s.total - s.warmup - 1;
  const p = span > 0 ? Math.min(1, (step - s.warmup) / span) : 0;
  return s.minLr + 0.5 * (s.base - s.minLr) * (1 + Math.cos(Math.PI * p));
}
