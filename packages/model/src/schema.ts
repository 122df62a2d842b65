// Validation of what we read back or take from users (model metadata, run files, configuration
// files), with zod schemas. A failure becomes one line naming the source, the key path and what
// was expected: `run/checkpoint.json: position.step: expected an integer, got "abc"`.
import type { z } from 'zod';

/** `a.b[2].c` from a zod issue path. */
export function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out;
}

function shown(input: unknown): string {
  if (input === undefined) return 'nothing';
  if (typeof input === 'object' && input !== null) return Array.isArray(input) ? 'an array' : 'an object';
  const s = JSON.stringify(input) ?? String(input);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

const TYPES: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
  record: 'an object',
  tuple: 'a list',
};

/** What an issue expected, in words. */
function expectation(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${TYPES[issue.expected] ?? issue.expected}`;
    case 'too_big':
      return issue.origin === 'array' || issue.origin === 'string' ? `expected at most ${issue.maximum} ${issue.origin === 'array' ? 'entries' : 'characters'}` : `expected at most ${issue.maximum}${issue.inclusive === false ? ' (exclusive)' : ''}`;
    case 'too_small':
      return issue.origin === 'array' || issue.origin === 'string' ? `expected at least ${issue.minimum} ${issue.origin === 'array' ? 'entries' : 'characters'}` : `expected ${issue.inclusive === false ? 'more than' : 'at least'} ${issue.minimum}`;
    case 'invalid_value':
      return `expected ${issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`}`;
    case 'unrecognized_keys':
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    case 'invalid_union':
      return 'matches none of the accepted forms';
    default:
      return issue.message;
  }
}

/** The first issue of a failed parse as one line (the rest follow from fixing it). */
export function issueLine(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const where = keyPath(issue.path);
  let input = 'input' in issue ? issue.input : undefined;
  // A discriminated union reports the whole object at the discriminator's path: show the discriminator.
  const last = issue.path[issue.path.length - 1];
  if (issue.code === 'invalid_union' && typeof last === 'string' && input && typeof input === 'object' && last in input) input = (input as Record<string, unknown>)[last];
  const got = issue.code === 'unrecognized_keys' || issue.code === 'custom' || !('input' in issue) ? '' : `, got ${shown(input)}`;
  return `${where ? `${where}: ` : ''}${expectation(issue)}${got}`;
}

/**
 * Parses `value` with `schema`; on failure throws `makeError(line)` where line is
 * "<source>: <key path>: <what was expected>, got <value>".
 */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, source: string, makeError: (message: string) => Error): z.output<S> {
  const r = schema.safeParse(value, { reportInput: true });
  if (r.success) return r.data;
  throw makeError(`${source}: ${issueLine(r.error)}`);
}
