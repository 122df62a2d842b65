// What every command shares: value parsers that turn bad input into usage errors, `--config
// file.json` (keys are flag names; flags given on the command line win), `--json`, and printing
// the effective configuration.
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, type Option } from 'commander';
import { CliError, ExitCode } from '../errors.js';

export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in [${min}, ${max}], got '${v}'`);
    return n;
  };
}

export function floatArg(min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number in [${min}, ${max}], got '${v}'`);
    return n;
  };
}

/** Adds `--config <file>`; call `resolveOptions` first thing in the action. */
export function withConfig(cmd: Command): Command {
  return cmd.option('--config <file>', 'JSON file whose keys are flag names (e.g. {"per-class": 10}); flags given here win');
}

function findOption(cmd: Command, key: string): Option | undefined {
  return cmd.options.find((o) => o.attributeName() === key || o.long === `--${key}` || o.long === `--no-${key}`);
}

/**
 * Merges `--config` into the command's options (command-line flags keep priority) and returns
 * them. Config values go through each option's own parser, so they are checked like flags.
 */
export function resolveOptions<T extends object>(cmd: Command): T & { config?: string } {
  const file = cmd.getOptionValue('config') as string | undefined;
  if (file) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new CliError(`--config ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, ExitCode.usage);
    }
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw new CliError(`--config ${file}: expected a JSON object of flag names`, ExitCode.usage);
    for (const [key, raw] of Object.entries(json)) {
      const opt = findOption(cmd, key);
      if (!opt || key === 'config') throw new CliError(`--config ${file}: unknown key '${key}' for '${cmd.name()}'`, ExitCode.usage);
      const name = opt.attributeName();
      if (cmd.getOptionValueSource(name) === 'cli') continue;
      let value: unknown = raw;
      if (opt.parseArg && raw !== null && typeof raw !== 'boolean') {
        try {
          value = Array.isArray(raw) ? raw.map((r) => opt.parseArg!(String(r), undefined)) : opt.parseArg(String(raw), undefined);
        } catch (e) {
          throw new CliError(`--config ${file}: '${key}': ${(e as Error).message}`, ExitCode.usage);
        }
      } else if (opt.argChoices && !opt.argChoices.includes(String(raw))) {
        throw new CliError(`--config ${file}: '${key}' must be one of ${opt.argChoices.join(', ')}, got ${JSON.stringify(raw)}`, ExitCode.usage);
      }
      cmd.setOptionValueWithSource(name, value, 'config');
    }
  }
  return cmd.opts() as T & { config?: string };
}

/** The options as a plain object with flag names as keys (what `--config` reads back). */
export function effectiveConfig(cmd: Command, skip: readonly string[] = ['config', 'json']): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const opt of cmd.options) {
    const name = opt.attributeName();
    const v = cmd.getOptionValue(name);
    if (v === undefined || skip.includes(name)) continue;
    out[opt.long!.replace(/^--(no-)?/, '')] = v;
  }
  return out;
}

export function printConfig(title: string, cfg: Record<string, unknown>, write = (s: string) => process.stdout.write(s)): void {
  const width = Math.max(...Object.keys(cfg).map((k) => k.length)) + 2;
  write(`${title}\n`);
  for (const [k, v] of Object.entries(cfg)) write(`  ${k.padEnd(width)}${typeof v === 'string' ? v : JSON.stringify(v)}\n`);
}
