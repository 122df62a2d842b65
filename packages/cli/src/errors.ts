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
  /** A file could not be written (a full disk, no permission, a read-only folder); what was there is kept. */
  writeFailed: 5,
  /** Stopped by SIGINT (Ctrl-C): training wrote a checkpoint first and says how to resume. */
  interrupted: 130,
  /** Stopped by SIGTERM, likewise. */
  terminated: 143,
} as const;

/** An error the user can act on: printed as one line, with the exit code it carries. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly code: number = ExitCode.failure,
  ) {
    super(message);
  }
}

/**
 * The errors of the packages below, by name, with the exit code each means. Anything else is a
 * defect of ours: still one line, and the stack only with MPFGVC_DEBUG=1.
 */
const CODES: Record<string, number> = {
  AdapterError: ExitCode.noAdapter,
  TrainingError: ExitCode.diverged,
  WriteError: ExitCode.writeFailed,
  ConfigurationError: ExitCode.usage,
  ConfigError: ExitCode.usage,
  WeightsError: ExitCode.failure,
  CheckpointError: ExitCode.failure,
  TokenizerError: ExitCode.failure,
  DatasetError: ExitCode.failure,
  UnsafePathError: ExitCode.failure,
  FileKindError: ExitCode.failure,
  MatError: ExitCode.failure,
  UnreadableImageError: ExitCode.failure,
  DeviceLostError: ExitCode.failure,
  RunFolderError: ExitCode.failure,
  TrainingInterrupted: ExitCode.interrupted,
  MetricsError: ExitCode.failure,
  ClassifierError: ExitCode.failure,
  ImageInputError: ExitCode.failure,
};

/** The exit code of an error of ours, or undefined for an unexpected one. */
export function exitCodeOf(e: unknown): number | undefined {
  if (e instanceof CliError) return e.code;
  const err = e as NodeJS.ErrnoException | undefined;
  const code = err?.name === undefined ? undefined : CODES[err.name];
  if (code !== undefined) return code;
  // A system error (a file vanished, a folder unreadable): the user's environment, not a defect.
  if (typeof err?.code === 'string' && typeof err.syscall === 'string') return ExitCode.failure;
  return undefined;
}

// C0 and C1 controls, DEL, and the bidirectional overrides that can make a name read differently
// from what it is: never sent to a terminal as they are.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Text safe to print on a terminal: control characters shown as \xNN / \u{NNNN} escapes. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.codePointAt(0)!;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}
