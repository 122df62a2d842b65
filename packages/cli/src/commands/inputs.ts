// The inputs of a batch job: files, folders (every image under them), globs and list files, in
// one fixed order, and the share of them that one machine of a job array takes (--shard i/n).
// Every machine expands the same arguments to the same list, so the shards need no coordination:
// shard i takes the items whose index is i-1 modulo n, and each output row carries its index.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IMAGE_EXTENSIONS, walkImages } from '@mpfgvc/train';
import { CliError, ExitCode } from '../errors.js';

export interface Shard {
  /** 1-based. */
  index: number;
  count: number;
}

export interface InputItem {
  /** Position in the whole job's list (all shards). */
  index: number;
  path: string;
}

/** `--shard i/n` (1 ≤ i ≤ n), as a job array numbers its tasks. */
export function shardArg(v: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const [index, count] = m ? [Number(m[1]), Number(m[2])] : [Number.NaN, Number.NaN];
  if (!(index >= 1 && count >= 1 && index <= count)) throw new InvalidArgumentError(`expected i/n with 1 <= i <= n (e.g. 2/8; Slurm: $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT), got '${v}'`);
  return { index, count };
}

/** Adds --list and --shard to a command over many inputs. */
export function withInputFlags(cmd: Command, what: string): Command {
  return cmd
    .option('--list <file>', `a file naming ${what}, one per line (blank lines and lines starting with # skipped; - reads stdin)`)
    .option('--shard <i/n>', 'this machine takes every n-th input from the i-th (1-based): one task of a job array; `mpfgvc merge` joins the outputs', shardArg);
}

const GLOB = /[*?[]/;

/** A glob's regular expression: `*` and `?` within a name, `**` across folders, `[…]` a class. */
function globRegex(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      // `**/` matches any number of folders, `**` at the end anything.
      const slash = pattern[i + 2] === '/';
      re += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        const body = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Files matching a glob, sorted; the walk starts at the pattern's longest folder without wildcards. */
function glob(pattern: string): string[] {
  const posix = pattern.split(sep).join('/');
  const parts = posix.split('/');
  const fixed: string[] = [];
  for (const p of parts) {
    if (GLOB.test(p)) break;
    fixed.push(p);
  }
  const base = fixed.join('/') || (posix.startsWith('/') ? '/' : '.');
  if (!existsSync(base) || !statSync(base).isDirectory()) return [];
  const re = globRegex(posix.startsWith('./') ? posix.slice(2) : posix);
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const d of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const p = dir === '.' ? d.name : join(dir, d.name);
      if (d.isDirectory()) walk(p);
      else if (re.test(p.split(sep).join('/'))) out.push(p);
    }
  };
  walk(base);
  return out;
}

function listFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new CliError(`--list ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, ExitCode.usage);
  }
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/**
 * The job's inputs in order: each argument (and each line of --list) as it is, a folder as every
 * image under it (sorted), a glob as its matching files (sorted); then this shard's share.
 * `images` false keeps arguments as they are (texts).
 */
export function expandInputs(args: readonly string[], opts: { list?: string; shard?: Shard; images?: boolean }): { items: InputItem[]; total: number } {
  const given = [...args, ...(opts.list ? listFile(opts.list) : [])];
  const all: string[] = [];
  for (const a of given) {
    if (opts.images === false) all.push(a);
    else if (existsSync(a) && statSync(a).isDirectory()) {
      const found = walkImages(a);
      if (found.length === 0) throw new CliError(`${a}: a folder with no images (${[...IMAGE_EXTENSIONS].join(' ')})`, ExitCode.usage);
      all.push(...found);
    } else if (!existsSync(a) && GLOB.test(a)) {
      const found = glob(a);
      if (found.length === 0) throw new CliError(`${a}: no file matches`, ExitCode.usage);
      all.push(...found);
    } else all.push(a);
  }
  if (all.length === 0) throw new CliError('no inputs: give files, folders, globs or --list <file>', ExitCode.usage);
  const items = all.map((path, index) => ({ index, path }));
  const s = opts.shard;
  return { items: s ? items.filter((it) => it.index % s.count === s.index - 1) : items, total: all.length };
}
