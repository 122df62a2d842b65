import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileAtomic } from './index.js';

describe('writeFileAtomic', () => {
  it('replaces the file and leaves no temporary behind', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atomic-'));
    const p = join(dir, 'ckpt.json');
    writeFileSync(p, 'old');
    writeFileAtomic(p, 'new');
    expect(readFileSync(p, 'utf8')).toBe('new');
    expect(readdirSync(dir)).toEqual(['ckpt.json']);
  });
  it('keeps the old file intact when the write fails', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atomic-'));
    const p = join(dir, 'ckpt.json');
    writeFileSync(p, 'old');
    // A folder where the temporary file has to go: the write fails before anything is renamed.
    mkdirSync(join(dir, `.ckpt.json.${process.pid}.tmp`));
    expect(() => writeFileAtomic(p, 'new')).toThrow(/^cannot write .*ckpt\.json: it is a folder$/);
    expect(readFileSync(p, 'utf8')).toBe('old');
    expect(readdirSync(dir).sort()).toEqual([`.ckpt.json.${process.pid}.tmp`, 'ckpt.json']);
  });
  it('names the file and the reason when its folder is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atomic-'));
    expect(() => writeFileAtomic(join(dir, 'missing', 'x.json'), 'x')).toThrow(/^cannot write .*missing\/x.json: no such folder$/);
  });
});
