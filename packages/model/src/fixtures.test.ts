// The golden fixtures are only as good as the generator that wrote them: fixtures/fixtures.json
// (written by `npm run fixtures`, scripts/fixtures.mjs) records, for each fixture, the scripts that
// produced it and their hash. A generator edited without regenerating leaves goldens that no longer
// say what its source says; this finds that without Python.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

interface Entry {
  generator: string;
  /** The generator and the local modules it imports, repository-relative. */
  sources: string[];
  /** sha256 of `sha256sum <sources>`'s output. */
  generatorSha256: string;
  torch: string;
}

const fixtures = new URL('../fixtures/', import.meta.url);
const root = new URL('../../../', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('fixtures.json', fixtures), 'utf8')) as Record<string, Entry>;
const sha256 = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');
const REGENERATE = 'regenerate with `npm run fixtures` (needs Python with torch)';

describe('golden fixtures', () => {
  it.each(Object.entries(manifest))('%s exists and its generator is unchanged since it was written', (file, entry) => {
    expect(existsSync(new URL(file, fixtures)), `fixtures/${file} is listed in fixtures.json but missing: ${REGENERATE}`).toBe(true);
    const missing = entry.sources.filter((s) => !existsSync(new URL(s, root)));
    expect(missing, `fixtures/${file}: its generator's sources are gone`).toEqual([]);
    const now = sha256(entry.sources.map((s) => `${sha256(readFileSync(new URL(s, root)))}  ${s}\n`).join(''));
    expect(now, `fixtures/${file} is stale: its generator changed since it wrote the file (one of ${entry.sources.join(', ')}); ${REGENERATE}`).toBe(entry.generatorSha256);
  });

  it('every fixture file has a generator recorded', () => {
    const unlisted = readdirSync(fixtures).filter((f) => f !== 'fixtures.json' && !(f in manifest));
    expect(unlisted, 'fixtures no generator is recorded for: add the script that writes them to GENERATORS in scripts/fixtures.mjs and run `npm run fixtures`').toEqual([]);
  });
});
