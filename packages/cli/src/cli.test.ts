import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../dist/mpfgvc.js', import.meta.url));

function mpfgvc(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, cwd: tmpdir() });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.trimEnd() };
}

describe('mpfgvc info', () => {
  it('--json reports the adapter, backend, features and limits', () => {
    const r = mpfgvc('info', '--json');
    expect(r.code).toBe(0);
    // Nothing on stderr: Dawn's notices about adapter limits do not reach users.
    expect(r.stderr).toBe('');
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

  it('takes --config like every command', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpfgvc-info-'));
    try {
      writeFileSync(join(dir, 'info.json'), '{"json": true}');
      const r = mpfgvc('info', '--config', join(dir, 'info.json'));
      expect(r.code, r.stderr).toBe(0);
      expect(typeof JSON.parse(r.stdout).adapter).toBe('string');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an unknown option exits 2', () => {
    const r = mpfgvc('info', '--frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--frobnicate'/);
  });
});

describe('the command line itself', () => {
  it('--version prints the package version', () => {
    const r = mpfgvc('--version');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
  });

  it("answers other trainers' flag names with ours, on the same line", () => {
    const r = mpfgvc('train', '--epochs', '3');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("error: unknown option '--epochs' (here: --stage1-epochs and --stage2-epochs)");
    expect(mpfgvc('train', '--data-dir', 'x').stderr).toMatch(/unknown option '--data-dir' \(here: --data-root\)$/);
  });

  it('a bare train shows its usage and starts nothing; a batch larger than the dataset is refused before the run folder exists', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mpfgvc-usage-'));
    try {
      const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, cwd });
      const bare = run('train');
      expect(bare.status).toBe(2);
      expect(bare.stderr).toMatch(/^Usage: mpfgvc train \[options\]/);
      expect(bare.stderr.trimEnd().split('\n').at(-1)).toBe("mpfgvc: train: say what to train on (--data, --data-root, ...) or --resume <dir>; the flags are listed above");
      expect(existsSync(join(cwd, 'mpfgvc-run'))).toBe(false);
      const big = run('train', '--data', 'synth', '--classes', '2', '--per-class', '4', '--stage1-batch', '16', '--out', 'r');
      expect(big.status).toBe(2);
      expect(big.stderr.trim().split('\n')).toEqual(['mpfgvc: --stage1-batch 16 exceeds the 8 training images']);
      expect(existsSync(join(cwd, 'r'))).toBe(false);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('train prints what differs from the defaults (all with --verbose), and nothing but the summary with --quiet', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mpfgvc-quiet-'));
    try {
      const run = (...args: string[]) => spawnSync(process.execPath, [bin, 'train', '--data', 'synth', '--classes', '2', '--per-class', '4', '--test-per-class', '1', '--val-per-class', '1', '--stage1-epochs', '1', '--stage2-epochs', '1', '--stage1-batch', '4', '--stage2-batch', '4', ...args], { encoding: 'utf8', timeout: 120_000, cwd });
      const short = run('--out', 'a', '--checkpoint-minutes', '10');
      expect(short.status, short.stderr).toBe(0);
      expect(short.stdout).toMatch(/^train \(what differs from the defaults; --verbose prints all\)\n/);
      expect(short.stdout).toMatch(/\n {2}data\.trainPerClass +4\n/);
      expect(short.stdout).not.toMatch(/stage1\.lr|checkpointMinutes/);
      const all = run('--out', 'b', '--verbose');
      expect(all.stdout).toMatch(/^train\n/);
      expect(all.stdout).toMatch(/\n {2}stage1\.lr +0\.001\n/);
      const quiet = run('--out', 'c', '--quiet');
      expect(quiet.status, quiet.stderr).toBe(0);
      expect(quiet.stdout).not.toMatch(/^train|stage 1 {2}epoch|checkpoint at|top-1: /m);
      expect(quiet.stdout).toMatch(/^stage 2: \d+ steps in .* test top-1 /m);
      expect(quiet.stdout).toMatch(/^model {7}.*model\.safetensors$/m);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

