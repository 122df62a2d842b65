export const ExitCode = {
  ok: 0,
  /** The command ran and failed (a check did not pass, a file was bad). */
  failure: 1,
  /** Invalid arguments. */
  usage: 2,
  /** No WebGPU adapter (or not the one asked for). */
  noAdapter: 3,
  /** Training stopped on a non-finite loss or state; the last good checkpoint is kept. */
  diverged: 4,
} as const;

/** An error the user can act on: printed as one line, with the exit code it carries. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code: number = ExitCode.failure,
  ) {
    super(message);
  }
}
