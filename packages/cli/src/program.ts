// The `mpfgvc` command line. Each command lives in its own file; this one wires them to commander
// and maps failures to exit codes that mean something.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { demoCommand } from './commands/demo.js';
import { evalCommand } from './commands/eval.js';
import { explainCommand } from './commands/explain.js';
import { featuresCommand } from './commands/features.js';
import { infoCommand } from './commands/info.js';
import { mergeCommand } from './commands/merge.js';
import { plotCommand } from './commands/plot.js';
import { predictCommand } from './commands/predict.js';
import { synthCommand } from './commands/synth.js';
import { trainCommand } from './commands/train.js';
import { ExitCode, exitCodeOf, printable } from './errors.js';

/** The package's version (package.json sits one folder above both src/ and the bundle in dist/). */
export function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Flags of other trainers (timm, Lightning scripts) and what they are called here. */
const ALIASES: Record<string, string> = {
  '--epochs': '--stage1-epochs and --stage2-epochs',
  '--lr': '--stage1-lr and --stage2-lr',
  '--learning-rate': '--stage1-lr and --stage2-lr',
  '--batch-size': '--stage1-batch and --stage2-batch',
  '-b': '--stage1-batch and --stage2-batch',
  '--data-dir': '--data-root',
  '--output': '--out',
  '--output-dir': '--out',
  '--opt': '--stage1-optimizer and --stage2-optimizer',
  '--smoothing': '--label-smoothing',
  '--clip-grad': '--clip-norm',
  '--img-size': '--image-size',
  '--resume-from': '--resume',
};

/** commander's unknown-option message with what the flag is called here, for flags of other trainers. */
function withAlias(message: string): string {
  const m = /unknown option '([^'=]+)/.exec(message);
  const here = m ? ALIASES[m[1]!] : undefined;
  return here && !message.includes('Did you mean') ? `${message.trimEnd()} (here: ${here})\n` : message;
}

export function buildProgram(): Command {
  const program = new Command('mpfgvc')
    .description('MP-FGVC (multimodal prompting for fine-grained visual classification) on WebGPU')
    .version(version(), '-V, --version', 'print the version')
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(withAlias(str)) });
  for (const cmd of [infoCommand(), demoCommand(), synthCommand(), plotCommand(), explainCommand(), predictCommand(), featuresCommand(), mergeCommand(), trainCommand(), evalCommand()]) {
    // Subcommands added whole do not inherit these: usage errors must reach runCli as exceptions.
    program.addCommand(cmd.exitOverride().configureOutput({ outputError: (str, write) => write(withAlias(str)) }));
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
      // An empty message: the command already said what failed (one line per bad image).
      if (err.message) process.stderr.write(`mpfgvc: ${printable(err.message)}\n`);
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
