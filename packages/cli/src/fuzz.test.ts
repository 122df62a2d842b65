// The fuzz campaigns, bounded: every parser of untrusted files gets a few hundred mutated inputs
// through the built runner (dist/fuzz.js), and none may throw an error of a foreign kind, hang or
// grow memory past the limit. `npm run fuzz -- --count 100000` runs the long campaigns.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const runner = fileURLToPath(new URL('../dist/fuzz.js', import.meta.url));

describe('fuzz campaigns', () => {
  it('every parser rejects mutated inputs with its own errors only, without hangs or memory growth', () => {
    const r = spawnSync(process.execPath, [runner, '--count', '300', '--seed', '7', '--json'], { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { violations: number; results: { target: string; inputs: number; accepted: number; foreign: number; hangs: number; memory: number; findings: unknown[]; rejected: Record<string, number> }[] };
    expect(report.results.map((x) => x.target)).toEqual(['safetensors', 'model metadata', 'mat', 'tokenizer', '--config', 'checkpoint.json', 'metrics.jsonl', 'dataset lists', 'images']);
    for (const t of report.results) {
      expect(t.findings, t.target).toEqual([]);
      expect(t.inputs).toBe(300);
      // A campaign that rejects everything, or nothing, tests only one side of its parser.
      const rejected = Object.values(t.rejected).reduce((a, b) => a + b, 0);
      expect(t.accepted + rejected, t.target).toBe(300);
      if (t.target !== 'images') expect(rejected, t.target).toBeGreaterThan(0);
      expect(t.accepted, t.target).toBeGreaterThan(0);
    }
    expect(report.violations).toBe(0);
  });

  it('sees each kind of finding: a foreign exception, a hang, memory growth (a check of the runner itself)', () => {
    const run = (target: string, ...limits: string[]) => {
      const r = spawnSync(process.execPath, [runner, '--target', target, '--count', '4', '--json', ...limits], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, r.stderr).toBe(1);
      return (JSON.parse(r.stdout) as { results: { foreign: number; hangs: number; memory: number; accepted: number; rejected: Record<string, number>; findings: { index: number; kind: string }[] }[] }).results[0]!;
    };
    const foreign = run('self-test foreign');
    expect(foreign.foreign + (foreign.rejected.RangeError ?? 0)).toBe(4);
    expect(foreign.foreign).toBeGreaterThan(0);
    expect(foreign.findings[0]).toMatchObject({ kind: 'foreign' });
    // The hung input is recorded and the campaign goes on after it in a new worker.
    const hang = run('self-test hang', '--time-limit', '500');
    expect(hang.hangs).toBe(1);
    expect(hang.findings).toEqual([expect.objectContaining({ index: 0, kind: 'hang' })]);
    expect(hang.accepted).toBe(3);
    const memory = run('self-test memory', '--memory-limit', '128');
    expect(memory.memory).toBe(1);
    expect(memory.findings).toEqual([expect.objectContaining({ index: 0, kind: 'memory' })]);
  });
});
