// Dawn's adapter-limit notices stay off stderr; everything else written there in the same window
// still gets through, and MPFGVC_DAWN_LOG=1 shows Dawn's output as it is. Run in child processes,
// whose fd 2 the test reads (build first: the children import dist/).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DAWN_LIMIT_NOTICE } from './native-stderr.js';

const dist = (f: string) => fileURLToPath(new URL(`../dist/${f}`, import.meta.url));
const NOTICE = 'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.';

function child(code: string, env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('native stderr while adapters are discovered', () => {
  it('knows the notice and nothing like it', () => {
    expect(DAWN_LIMIT_NOTICE.test(NOTICE)).toBe(true);
    expect(DAWN_LIMIT_NOTICE.test('Warning: something else reduced')).toBe(false);
    expect(DAWN_LIMIT_NOTICE.test(`${NOTICE} and more`)).toBe(false);
  });

  it('drops the notices written natively to fd 2 inside the window, keeps every other line, and stderr works after', () => {
    const r = child(`
      import { writeSync } from 'node:fs';
      import { withoutDawnNotices } from ${JSON.stringify(dist('native-stderr.js'))};
      const v = await withoutDawnNotices(async () => { writeSync(2, ${JSON.stringify(`${NOTICE}\nkeep me\n`)}); return 7; });
      writeSync(2, 'after\\n');
      console.log(v);
    `);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('7');
    expect(r.stderr).toBe('keep me\nafter\n');
  });

  it('a failing call still restores stderr and passes its error on', () => {
    const r = child(`
      import { writeSync } from 'node:fs';
      import { withoutDawnNotices } from ${JSON.stringify(dist('native-stderr.js'))};
      try { await withoutDawnNotices(async () => { writeSync(2, 'inside\\n'); throw new Error('boom'); }); } catch (e) { writeSync(2, e.message + '\\n'); }
    `);
    expect(r.stderr).toBe('inside\nboom\n');
  });

  it('overlapping calls take turns: each one is filtered and none waits forever on the other', () => {
    const r = child(`
      import { writeSync } from 'node:fs';
      import { withoutDawnNotices } from ${JSON.stringify(dist('native-stderr.js'))};
      const slow = (tag, ms) => withoutDawnNotices(async () => {
        writeSync(2, ${JSON.stringify(`${NOTICE}\n`)} + tag + ' in\\n');
        await new Promise((r) => setTimeout(r, ms));
        writeSync(2, tag + ' out\\n');
        return tag;
      });
      console.log((await Promise.all([slow('a', 10), slow('b', 100)])).join(','));
    `);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('a,b');
    expect(r.stderr).toBe('a in\na out\nb in\nb out\n');
  });

  it('opening a device, and a further instance for another library, print nothing; MPFGVC_DAWN_LOG=1 lets Dawn speak', () => {
    const open = `
      import { dawnInstance, requestDevice } from ${JSON.stringify(dist('index.js'))};
      const d = await requestDevice();
      console.log(d.info.name);
      const other = await (await dawnInstance(d.info)).requestAdapter();
      if (!other) throw new Error('no adapter through dawnInstance');
      d.destroy();`;
    const quiet = child(open);
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(quiet.stderr).toBe('');
    const loud = child(open, { MPFGVC_DAWN_LOG: '1' });
    expect(loud.status).toBe(0);
    // Only adapters whose limits Dawn lowers print the notice (lavapipe does; others print nothing).
    if (/llvmpipe/.test(loud.stdout)) expect(loud.stderr.split('\n').some((l) => DAWN_LIMIT_NOTICE.test(l))).toBe(true);
  });
});
