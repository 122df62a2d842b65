// What every command shares: value parsers that turn bad input into usage errors, `--config
// file.json` (keys are flag names; flags given on the command line win), `--json`, and printing
// the effective configuration.
import { type Command, InvalidArgumentError, type Option } from 'commander';
import { readRegularText } from '@mpfgvc/train';
import { CliError, ExitCode, printable } from '../errors.js';

/**
 * Options that destroy something a user made (`synth --overwrite` replaces a folder): from a
 * --config file only as the JSON boolean true, never as a string that happens to be truthy.
 */
const DESTRUCTIVE = new Set(['overwrite']);

/** A --config value for a switch (a flag without a value): true/false, or the strings "true"/"false". */
function switchValue(raw: unknown, key: string, file: string): boolean {
  if (typeof raw === 'boolean') return raw;
  if (!DESTRUCTIVE.has(key) && (raw === 'true' || raw === 'false')) return raw === 'true';
  const want = DESTRUCTIVE.has(key) ? 'the JSON boolean true or false (it deletes data, so no string is taken)' : 'true or false';
  throw new CliError(`--config ${file}: '${key}' must be ${want}, got ${JSON.stringify(raw)}`, ExitCode.usage);
}

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
      json = JSON.parse(readRegularText(file, { what: 'config', maxBytes: 16 * 1024 * 1024 }));
    } catch (e) {
      throw new CliError(`--config ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, ExitCode.usage);
    }
    applyConfig(cmd, json, file);
  }
  return cmd.opts() as T & { config?: string };
}

/** Sets the command's options from a parsed --config object (`file` names it in errors); flags from the command line keep priority. */
export function applyConfig(cmd: Command, json: unknown, file: string): void {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new CliError(`--config ${file}: expected a JSON object of flag names`, ExitCode.usage);
  for (const [key, raw] of Object.entries(json)) {
    const opt = findOption(cmd, key);
    if (!opt || key === 'config') throw new CliError(`--config ${file}: unknown key '${key}' for '${cmd.name()}'`, ExitCode.usage);
    const name = opt.attributeName();
    if (cmd.getOptionValueSource(name) === 'cli') continue;
    cmd.setOptionValueWithSource(name, configValue(opt, key, raw, file), 'config');
  }
}

/**
 * A --config value through the option's own parser, as if typed on the command line: a number or
 * a string for a value option (a list only where the flag takes several), a boolean for a switch.
 */
function configValue(opt: Option, key: string, raw: unknown, file: string): unknown {
  // A negatable switch (--no-x) is named by its positive key: {"x": false} turns it off.
  if (opt.isBoolean() || opt.negate) return switchValue(raw, key, file);
  const one = (v: unknown): unknown => {
    if (!(typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)))) {
      throw new CliError(`--config ${file}: '${key}' must be a ${opt.parseArg ? 'number or string' : 'string'}, got ${JSON.stringify(v) ?? String(v)}`, ExitCode.usage);
    }
    const text = String(v);
    if (opt.argChoices && !opt.argChoices.includes(text)) throw new CliError(`--config ${file}: '${key}' must be one of ${opt.argChoices.join(', ')}, got ${JSON.stringify(v)}`, ExitCode.usage);
    if (!opt.parseArg) return text;
    try {
      return opt.parseArg(text, undefined);
    } catch (e) {
      throw new CliError(`--config ${file}: '${key}': ${(e as Error).message}`, ExitCode.usage);
    }
  };
  if (Array.isArray(raw)) {
    if (!opt.variadic) throw new CliError(`--config ${file}: '${key}' takes one value, got a list`, ExitCode.usage);
    return raw.map(one);
  }
  return one(raw);
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
  for (const [k, v] of Object.entries(cfg)) write(`  ${printable(k.padEnd(width))}${printable(typeof v === 'string' ? v : JSON.stringify(v))}\n`);
}
