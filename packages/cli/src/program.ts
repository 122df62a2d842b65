// The `mpfgvc` command line. Each command lives in its own file; this one wires them to commander
// and maps failures to exit codes that mean something.
import { Command, CommanderError } from 'commander';
import { demoCommand } from './commands/demo.js';
import { evalCommand } from './commands/eval.js';
import { explainCommand } from './commands/explain.js';
import { featuresCommand } from './commands/features.js';
import { infoCommand } from './commands/info.js';
import { plotCommand } from './commands/plot.js';
import { predictCommand } from './commands/predict.js';
import { synthCommand } from './commands/synth.js';
import { trainCommand } from './commands/train.js';
import { ExitCode, exitCodeOf, printable } from './errors.js';

export function buildProgram(): Command {
  const program = new Command('mpfgvc')
    .description('MP-FGVC (multimodal prompting for fine-grained visual classification) on WebGPU')
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str) });
  for (const cmd of [infoCommand(), demoCommand(), synthCommand(), plotCommand(), explainCommand(), predictCommand(), featuresCommand(), trainCommand(), evalCommand()]) {
    // Subcommands added whole do not inherit these: usage errors must reach runCli as exceptions.
    program.addCommand(cmd.exitOverride().configureOutput({ outputError: (str, write) => write(str) }));
  }
  return program;
}

/** Runs the CLI and returns the exit code (never throws). */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ExitCode.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    const err = e as Error;
    const code = exitCodeOf(e);
    const debug = process.env.MPFGVC_DEBUG === '1';
    if (code !== undefined) {
      process.stderr.write(`mpfgvc: ${printable(err.message)}\n`);
      if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
      return code;
    }
    // A defect of ours, not the user's: one line all the same; the stack when asked for.
    const line = `${err?.name && err.name !== 'Error' ? `${err.name}: ` : ''}${err?.message ?? String(e)}`.split('\n')[0]!;
    process.stderr.write(`mpfgvc: internal error: ${printable(line)}${debug ? '' : ' (MPFGVC_DEBUG=1 shows where)'}\n`);
    if (debug) process.stderr.write(`${err?.stack ?? String(e)}\n`);
    return ExitCode.failure;
  }
}
