import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../dist/mpfgvc.js', import.meta.url));

function mpfgvc(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.split('\n').filter((l) => l && !l.startsWith('Warning:')).join('\n') };
}

describe('mpfgvc info', () => {
  it('--json reports the adapter, backend, features and limits', () => {
    const r = mpfgvc('info', '--json');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(typeof info.adapter).toBe('string');
    expect(info.adapter.length).toBeGreaterThan(0);
    expect(info.backend).not.toBe('unknown');
    expect(Array.isArray(info.features)).toBe(true);
    expect(info.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
  });

  it('--check runs kernels against float64 references', () => {
    const r = mpfgvc('info', '--json', '--check');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.checks.length).toBeGreaterThan(0);
    expect(info.checks.every((c: { ok: boolean }) => c.ok)).toBe(true);
  });

  it('a missing adapter is one line listing the available ones, exit 3', () => {
    const r = mpfgvc('info', '--adapter', 'no-such-gpu');
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^mpfgvc: no WebGPU adapter matches adapter=no-such-gpu; available: .+$/);
  });

  it('an unknown option exits 2', () => {
    const r = mpfgvc('info', '--frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--frobnicate'/);
  });
});
