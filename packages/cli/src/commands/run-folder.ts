// What `train` and `demo` do around the loop so that a run never loses work: the run folder is
// taken (locked; a folder that holds another run is refused unless it is to be overwritten), and
// SIGINT/SIGTERM stop the run after the step in progress, with a checkpoint and the command that
// resumes it. A second signal exits at once: every file is written atomically, so nothing is left
// half-written; the run then resumes from its last checkpoint. The run's model card is given the
// command that trains it again.
import { isAbsolute, join, relative, resolve } from 'node:path';
import { type RunLock, TrainingInterrupted, takeRunFolder as takeFolder } from '@mpfgvc/train';
import { CliError, ExitCode, printable } from '../errors.js';

/**
 * Creates and locks the run folder `dir` for `command`. A folder that already holds a run is
 * refused (exit 1) unless `overwrite`, which removes that run's files first.
 */
export function takeRunFolder(dir: string, opts: { command: string; overwrite: boolean; say?: (line: string) => void }): RunLock {
  return takeFolder(dir, {
    command: opts.command,
    overwrite: opts.overwrite,
    refusal: `\`mpfgvc train --resume ${dir}\` continues it, --overwrite starts again there, or choose another --out`,
    onCleared: (gone) => opts.say?.(`--overwrite: removed the earlier run's ${gone.length} files from ${dir}`),
  });
}

export const SIGNAL_EXIT: Record<string, number> = { SIGINT: ExitCode.interrupted, SIGTERM: ExitCode.terminated };

/**
 * An AbortSignal that SIGINT or SIGTERM aborts (with the signal's name as its reason); the second
 * signal exits at once with 128 + its number. `dispose` restores the default handling.
 */
export function stopOnSignals(stream: NodeJS.WritableStream): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      stream.write(`\n${sig} again: exiting now; the run resumes from its last checkpoint\n`);
      process.exit(SIGNAL_EXIT[sig] ?? ExitCode.interrupted);
    }
    stream.write(`\n${sig}: stopping after this step and writing a checkpoint (${sig === 'SIGINT' ? 'Ctrl-C' : sig} again exits at once)\n`);
    controller.abort(sig);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/** The one line a stopped run ends with, and the exit code of the signal that stopped it. */
export function interrupted(e: TrainingInterrupted, resumeDir: string): CliError {
  const code = SIGNAL_EXIT[String(e.reason)] ?? ExitCode.interrupted;
  const how = e.checkpoint ? `; continue with: mpfgvc train --resume ${resumeDir}` : '';
  return new CliError(`${printable(String(e.reason ?? 'interrupted'))}: ${e.message}${how}`, code);
}

/** A word for the shell: as it is when nothing in it is special, else single-quoted. */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * The command that trains the run in `runDir` again, from the flags it recorded in cli.json, into
 * a new folder beside it (`<dir>-again`): what its model card shows. Run from the folder the run was
 * started in, where the paths in cli.json lead.
 */
export function reproduceCommand(command: 'train' | 'demo', runDir: string): string {
  const cwd = process.cwd();
  const dir = resolve(runDir);
  const shown = (p: string) => {
    const r = relative(cwd, p);
    return r && !r.startsWith('..') && !isAbsolute(r) ? r : p;
  };
  return `cd ${shellWord(cwd)} && mpfgvc ${command} --config ${shellWord(shown(join(dir, 'cli.json')))} --out ${shellWord(shown(`${dir}-again`))}`;
}
