// Seeded mutators for the fuzz campaigns: byte-level edits for binary formats and structural
// edits for JSON. Input k of a campaign is a pure function of (seed, k), so any finding can be
// reproduced alone with `--seed s --from k --count 1`.
import { Rng } from '@mpfgvc/kernels';

/** The generator of input `index` of a campaign seeded with `seed`. */
export function inputRng(seed: number, index: number): Rng {
  return new Rng((Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(index, 0x85ebca6b)) >>> 0);
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[Math.floor(rng.next() * items.length)]!;
}

function below(rng: Rng, n: number): number {
  return Math.floor(rng.next() * n);
}

/** Values that break size checks: zero, negatives, powers of two and their neighbours, huge, fractional. */
const INTERESTING_NUMBERS = [0, -1, 1, -0.5, 0.5, 2, 3, 7, 8, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 1e6, 1e9, 1e12, 1e300, -1e300, 1e-300, 4.9e-324];
const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x2e, 0x2f, 0x30, 0x39, 0x5c, 0x7b, 0x7d];

/**
 * A copy of `src` with 1-4 byte-level edits: bit flips, interesting bytes, 32/64-bit little-endian
 * integers overwritten, ranges deleted, duplicated or truncated, a splice from `other`. `focus`
 * (a byte count) sends most edits into the first bytes, where headers live.
 */
export function mutateBytes(rng: Rng, src: Uint8Array, opts: { other?: Uint8Array; focus?: number } = {}): Uint8Array {
  let b: Uint8Array = Uint8Array.from(src);
  const edits = 1 + below(rng, 4);
  const at = (n: number) => (opts.focus && rng.next() < 0.8 ? below(rng, Math.min(opts.focus, n)) : below(rng, n));
  for (let e = 0; e < edits && b.length > 0; e++) {
    const kind = below(rng, 9);
    const i = at(b.length);
    switch (kind) {
      case 0:
      case 1:
        b[i] = b[i]! ^ (1 << below(rng, 8));
        break;
      case 2:
        b[i] = pick(rng, INTERESTING_BYTES);
        break;
      case 3: {
        if (i + 4 > b.length) break;
        new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(i, pick(rng, INTERESTING_NUMBERS) >>> 0, true);
        break;
      }
      case 4: {
        if (i + 8 > b.length) break;
        new DataView(b.buffer, b.byteOffset, b.byteLength).setBigUint64(i, BigInt.asUintN(64, BigInt(Math.trunc(Math.abs(pick(rng, INTERESTING_NUMBERS))) % 2 ** 53)), true);
        break;
      }
      case 5: {
        const n = 1 + below(rng, Math.min(64, b.length - i));
        b = concat(b.subarray(0, i), b.subarray(i + n));
        break;
      }
      case 6: {
        const n = 1 + below(rng, Math.min(64, b.length - i));
        b = concat(b.subarray(0, i + n), b.subarray(i));
        break;
      }
      case 7:
        b = b.subarray(0, i);
        break;
      case 8: {
        const o = opts.other;
        if (!o || o.length === 0) break;
        const j = below(rng, o.length);
        b = concat(b.subarray(0, i), o.subarray(j, j + 1 + below(rng, 256)), b.subarray(i));
        break;
      }
    }
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function randomValue(rng: Rng, depth = 0): Json {
  switch (below(rng, depth > 2 ? 5 : 8)) {
    case 0:
      return pick(rng, INTERESTING_NUMBERS);
    case 1:
      return pick(rng, ['', 'false', 'true', '0', '-1', '1e9', '../../../../tmp/x', '/dev/zero', 'a\u0000b', '\u001b[31mred', 'x'.repeat(300), 'auto', 'bird', 'synth', 'folder', 'gelu', 'datp', 'fixed', 'vision', 'sgd']);
    case 2:
      return pick(rng, [true, false, null]);
    case 3:
      return below(rng, 1000) - 10;
    case 4:
      return rng.next() * 10 - 1;
    case 5:
      return Array.from({ length: below(rng, 4) }, () => randomValue(rng, depth + 1));
    case 6:
      return Object.fromEntries(Array.from({ length: below(rng, 3) }, (_, k) => [`k${k}`, randomValue(rng, depth + 1)]));
    default:
      return Array.from({ length: 200 }, () => 1);
  }
}

/** Every (container, key) pair of a JSON tree, for structural edits. */
function slots(v: Json, out: [Json[] | { [k: string]: Json }, string | number][] = []): [Json[] | { [k: string]: Json }, string | number][] {
  if (Array.isArray(v)) v.forEach((x, i) => (out.push([v, i]), slots(x, out)));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push([v, k]), slots(x, out);
  return out;
}

/**
 * A structurally edited deep copy of `src`: 1-3 of replacing a value (by an interesting one, a
 * number scaled up, a string-typed boolean), deleting a key, adding an unknown key, nesting.
 */
export function mutateJson(rng: Rng, src: unknown): unknown {
  const root = JSON.parse(JSON.stringify(src)) as Json;
  const edits = 1 + below(rng, 3);
  for (let e = 0; e < edits; e++) {
    const all = slots(root);
    if (all.length === 0) return randomValue(rng);
    const [box, key] = pick(rng, all);
    const current = (box as Record<string | number, Json>)[key]!;
    const kind = below(rng, 7);
    const set = (v: Json) => ((box as Record<string | number, Json>)[key] = v);
    if (kind === 0) set(randomValue(rng));
    else if (kind === 1 && typeof current === 'number') set(current * pick(rng, [1e3, 1e6, -1, 0, 1e9, 0.5, 1.0000001]));
    else if (kind === 1 && typeof current === 'boolean') set(String(current));
    else if (kind === 2 && !Array.isArray(box)) delete (box as Record<string, Json>)[key as string];
    else if (kind === 2 && Array.isArray(box)) box.splice(key as number, 1);
    else if (kind === 3 && !Array.isArray(box)) (box as Record<string, Json>)[pick(rng, ['unknown', '__proto__', 'constructor', 'extra'])] = randomValue(rng);
    else if (kind === 4) set([current]);
    else if (kind === 5 && typeof current === 'string') set(current + pick(rng, ['/..', '\u0000', '\u001b', 'x'.repeat(5000), '']));
    else set(pick(rng, INTERESTING_NUMBERS));
  }
  return root;
}

/** Text with one of the byte mutations, or a JSON value re-serialised after structural edits. */
export function mutateJsonText(rng: Rng, value: unknown): string {
  if (rng.next() < 0.7) return JSON.stringify(mutateJson(rng, value));
  return Buffer.from(mutateBytes(rng, Buffer.from(JSON.stringify(value)))).toString('utf8');
}
