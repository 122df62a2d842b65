// Hostile and damaged inputs end to end, through the built bundle: each is one line on stderr with
// its documented exit code, nothing is written outside the folders the user named, no read waits
// on a pipe, and what a user made survives. The run they work on is a tiny two-stage training.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors, readF32, serializeSafetensors } from '@mpfgvc/model';

const bin = fileURLToPath(new URL('../dist/mpfgvc.js', import.meta.url));
let tmp: string;

function mpfgvc(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, cwd: tmp, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.split('\n').filter((l) => l).join('\n') };
}

function expectOneLine(r: { code: number | null; stderr: string }, code: number, pattern: RegExp | string) {
  expect(r.stderr.split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(typeof pattern === 'string' ? new RegExp(`^mpfgvc: ${pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) : pattern);
  expect(r.code).toBe(code);
}

/** A copy of the trained run to damage. */
function copyRun(name: string): string {
  const dir = join(tmp, name);
  cpSync(join(tmp, 'run'), dir, { recursive: true });
  return dir;
}

function editJson(path: string, edit: (j: Record<string, any>) => void): void {
  const j = JSON.parse(readFileSync(path, 'utf8'));
  edit(j);
  writeFileSync(path, JSON.stringify(j));
}

let image: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'mpfgvc-hostile-'));
  writeFileSync(join(tmp, 'tiny.json'), JSON.stringify({ classes: 3, 'per-class': 8, 'test-per-class': 2, 'stage1-epochs': 1, 'stage2-epochs': 1, 'stage1-batch': 8, 'stage2-batch': 8 }));
  const r = mpfgvc(['train', '--config', 'tiny.json', '--out', 'run', '--json']);
  expect(r.code, r.stderr).toBe(0);
  const s = mpfgvc(['synth', '--out', 'birds', '--classes', '3', '--per-class', '1', '--test-per-class', '1', '--size', '32', '--json']);
  expect(s.code, s.stderr).toBe(0);
  image = join(tmp, 'birds', 'images', readFileSync(join(tmp, 'birds', 'images.txt'), 'utf8').split('\n')[0]!.split(' ')[1]!);
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('a crafted run folder', () => {
  it('cannot make --resume write outside it: a path as the step is refused and nothing is created', () => {
    const run = copyRun('pwned');
    const target = join(tmp, 'outside');
    editJson(join(run, 'checkpoint.json'), (j) => (j.position.step = `/../../../../../../../..${target}/PWNED`));
    expectOneLine(mpfgvc(['train', '--resume', run]), 1, `${join(run, 'checkpoint.json')}: position.step: expected a number, got "/../`);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(tmp).filter((f) => f.includes('PWNED'))).toEqual([]);
  });

  it("cannot make predict read another run's model, or a model outside through a symlink", () => {
    const run = copyRun('other');
    editJson(join(run, 'checkpoint.json'), (j) => (j.model = '../run/model.safetensors'));
    expectOneLine(mpfgvc(['predict', '--checkpoint', run, image]), 1, `${join(run, 'checkpoint.json')}: model: must be 'step-6-stage2.model.safetensors' for the recorded position`);
    const linked = copyRun('linked');
    rmSync(join(linked, 'step-6-stage2.model.safetensors'));
    symlinkSync(join(tmp, 'run', 'model.safetensors'), join(linked, 'step-6-stage2.model.safetensors'));
    expectOneLine(mpfgvc(['predict', '--checkpoint', linked, image]), 1, /outside .*linked \(symlinks are followed\)$/);
  });

  it('with a configuration it could not have run is refused by the key at fault', () => {
    const run = copyRun('config');
    editJson(join(run, 'checkpoint.json'), (j) => (j.config.model.vision.depth = 1e6));
    expectOneLine(mpfgvc(['train', '--resume', run]), 1, `${join(run, 'checkpoint.json')}: config: model.vision.depth: expected at most 256, got 1000000`);
    for (const broken of ['{}', '[]', '"x"', '{"format": "mpfgvc-run-1"}']) {
      writeFileSync(join(run, 'checkpoint.json'), broken);
      expectOneLine(mpfgvc(['train', '--resume', run]), 1, `${join(run, 'checkpoint.json')}: `);
    }
  });
});

describe('model files', () => {
  it('whose metadata asks for a million blocks, or that hold NaN, are one line, at once', () => {
    const st = parseSafetensors(new Uint8Array(readFileSync(join(tmp, 'run', 'model.safetensors'))), 'model');
    const rewrite = (name: string, meta: Record<string, string>, nan = false) => {
      const entries: Parameters<typeof serializeSafetensors>[0] = {};
      for (const [k, e] of st.tensors) {
        const data = readF32(st, k);
        if (nan && k === 'vision_head.bias') data[0] = NaN;
        entries[k] = { dtype: 'F32', shape: e.shape, data };
      }
      writeFileSync(join(tmp, name), serializeSafetensors(entries, meta));
    };
    const config = JSON.parse(st.metadata.config!);
    rewrite('deep.safetensors', { ...st.metadata, config: JSON.stringify({ ...config, vision: { ...config.vision, depth: 1e6 } }) });
    const started = performance.now();
    expectOneLine(mpfgvc(['predict', '--checkpoint', 'deep.safetensors', image]), 1, 'checkpoint deep.safetensors: metadata config: vision.depth: expected at most 256, got 1000000');
    expect(performance.now() - started).toBeLessThan(30_000);
    rewrite('nan.safetensors', st.metadata, true);
    expectOneLine(mpfgvc(['predict', '--checkpoint', 'nan.safetensors', image]), 1, "checkpoint nan.safetensors: tensor 'vision_head.bias' holds NaN at index 0");
  });

  it('and images that are named pipes fail at once instead of waiting for a writer', () => {
    execFileSync('mkfifo', [join(tmp, 'pipe.safetensors')]);
    execFileSync('mkfifo', [join(tmp, 'pipe.png')]);
    expectOneLine(mpfgvc(['predict', '--checkpoint', 'pipe.safetensors', image]), 1, `checkpoint pipe.safetensors: a named pipe, not a regular file`);
    expectOneLine(mpfgvc(['predict', '--checkpoint', 'run', 'pipe.png']), 1, /^mpfgvc: image pipe.png: cannot read it \(image pipe.png: a named pipe, not a regular file\)$/);
  });
});

describe('a model file on its own', () => {
  it('copied out of its run folder still names its classes and keeps its normalisation', () => {
    mkdirSync(join(tmp, 'alone'));
    cpSync(join(tmp, 'run', 'model.safetensors'), join(tmp, 'alone', 'bird-model.safetensors'));
    const p = mpfgvc(['predict', '--checkpoint', join(tmp, 'alone', 'bird-model.safetensors'), '--top', '3', '--json', image]);
    expect(p.code, p.stderr).toBe(0);
    const names = JSON.parse(readFileSync(join(tmp, 'run', 'eval-stage2.json'), 'utf8')).classes as string[];
    const got = JSON.parse(p.stdout).results[0].ensemble as { name: string }[];
    expect(got.map((c) => c.name).every((n) => names.includes(n))).toBe(true);
  });
});

describe('--config', () => {
  it('"false" is false: a string cannot turn --overwrite on, and "strict": "false" leaves strict off', () => {
    writeFileSync(join(tmp, 'overwrite.json'), JSON.stringify({ overwrite: 'false', classes: 2, 'per-class': 1, 'test-per-class': 1, size: 16 }));
    const before = readFileSync(join(tmp, 'birds', 'images.txt'), 'utf8');
    expectOneLine(mpfgvc(['synth', '--out', 'birds', '--config', 'overwrite.json']), 2, "--config overwrite.json: 'overwrite' must be the JSON boolean true or false (it deletes data, so no string is taken), got \"false\"");
    writeFileSync(join(tmp, 'overwrite.json'), JSON.stringify({ overwrite: false }));
    expectOneLine(mpfgvc(['synth', '--out', 'birds', '--config', 'overwrite.json']), 1, /already exists/);
    expect(readFileSync(join(tmp, 'birds', 'images.txt'), 'utf8')).toBe(before);

    writeFileSync(join(tmp, 'strict.json'), JSON.stringify({ strict: 'false', classes: 2, 'per-class': 2, 'test-per-class': 1, 'stage1-epochs': 0, 'stage2-epochs': 0 }));
    const r = mpfgvc(['train', '--config', 'strict.json', '--out', 'strict-run', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(tmp, 'strict-run', 'config.json'), 'utf8')).strict).toBe(false);
    writeFileSync(join(tmp, 'typed.json'), JSON.stringify({ 'per-class': true }));
    expectOneLine(mpfgvc(['train', '--config', 'typed.json', '--out', 'typed']), 2, "--config typed.json: 'per-class' must be a number or string, got true");
    expect(existsSync(join(tmp, 'typed'))).toBe(false);
  });
});

describe('failures of our making or the machine', () => {
  it('a full disk is exit 5 with one line, not 4 (the code of a diverged run)', () => {
    // A run lengthened on resume, whose metrics file is on a full device.
    const full = copyRun('full');
    rmSync(join(full, 'metrics.jsonl'));
    symlinkSync('/dev/full', join(full, 'metrics.jsonl'));
    expectOneLine(mpfgvc(['train', '--resume', full, '--stage2-epochs', '2']), 5, `cannot write ${join(full, 'metrics.jsonl')}: no space left on the device`);
    expect(existsSync(join(full, 'run.lock'))).toBe(false);
  });

  it('no stack trace unless MPFGVC_DEBUG=1; control characters in names never reach the terminal', () => {
    // Class names from the model file's own metadata, as a crafted file might carry them.
    const st = parseSafetensors(new Uint8Array(readFileSync(join(tmp, 'run', 'model.safetensors'))), 'model');
    const entries: Parameters<typeof serializeSafetensors>[0] = {};
    for (const [k, e] of st.tensors) entries[k] = { dtype: 'F32', shape: e.shape, data: readF32(st, k) };
    const info = { ...JSON.parse(st.metadata.info!), classes: ['\u001b[31mred\u001b[0m', 'b\u0007ell', 'plain'] };
    writeFileSync(join(tmp, 'escape.safetensors'), serializeSafetensors(entries, { ...st.metadata, info: JSON.stringify(info) }));
    const p = mpfgvc(['predict', '--checkpoint', 'escape.safetensors', '--top', '3', image]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    expect(p.stdout).toContain('\\x1b[31mred\\x1b[0m');
    expect(p.stdout).toContain('b\\x07ell');

    const bad = copyRun('debug');
    writeFileSync(join(bad, 'checkpoint.json'), '{}');
    expectOneLine(mpfgvc(['eval', bad]), 1, `${join(bad, 'checkpoint.json')}: format: expected "mpfgvc-run-1", got nothing`);
    const debug = mpfgvc(['eval', bad], { MPFGVC_DEBUG: '1' });
    expect(debug.code).toBe(1);
    expect(debug.stderr.split('\n').length).toBeGreaterThan(2);
    expect(debug.stderr).toMatch(/\n\s+at /);
  });
});
