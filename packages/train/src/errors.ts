// The errors the training package throws on purpose, by kind, so that callers (the CLI maps them
// to exit codes) can tell a user's configuration from a damaged run folder without reading text.
import type { RunPosition } from './checkpoint.js';

/** A configuration the loop cannot run, naming the field ("config: stage1.lr: ..."). */
export class ConfigurationError extends Error {
  override name = 'ConfigurationError';
}

/** The run folder cannot be used as asked (it already holds a run, or another process has it). */
export class RunFolderError extends Error {
  override name = 'RunFolderError';
}

/** Training stopped on a non-finite loss or state; the last good checkpoint is kept. */
export class TrainingError extends Error {
  override name = 'TrainingError';
}

/** The run stopped on request (TrainHooks.signal) with a checkpoint to resume from. */
export class TrainingInterrupted extends Error {
  override name = 'TrainingInterrupted';
  constructor(
    readonly outDir: string,
    /** checkpoint.json in force ('' if none was ever written). */
    readonly checkpoint: string,
    readonly position: RunPosition | undefined,
    /** What aborted the signal (e.g. 'SIGINT'), when it said. */
    readonly reason: unknown,
  ) {
    const at = position ? `stage ${position.stage}, step ${position.step}` : 'the start';
    super(checkpoint ? `stopped at ${at}; checkpoint ${checkpoint}` : `stopped before the first checkpoint of ${outDir}`);
  }
}
