#!/usr/bin/env node
// Makes a fresh clone runnable: installs npm dependencies when they are missing or stale and, when
// no WebGPU adapter can be found, installs a software Vulkan driver (Mesa's lavapipe) where that is
// possible (Debian/Ubuntu as root) or says exactly what to install; with --browser, the system's
// Chromium for the web app's tests the same way (never a browser download of its own). Plain Node,
// no dependencies: it runs before anything is installed.
//
//   node scripts/setup.mjs             dependencies + adapter check
//   node scripts/setup.mjs --browser   ... + a Chromium for the browser tests
//   node scripts/setup.mjs --no-gpu    dependencies only
//
// MPFGVC_SKIP_SETUP=1 skips everything (for environments that manage their own installs).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));

function log(msg) {
  process.stderr.write(`[setup] ${msg}\n`);
}

function fail(msg) {
  process.stderr.write(`[setup] ${msg}\n`);
  process.exit(1);
}

function run(cmd, cmdArgs, opts = {}) {
  // The child's standard output goes to standard error: what runs after setup may print a document (bench --json) on stdout.
  const r = spawnSync(cmd, cmdArgs, { stdio: ['inherit', 2, 'inherit'], cwd: root, ...opts });
  if (r.status !== 0) fail(`'${cmd} ${cmdArgs.join(' ')}' failed (exit ${r.status ?? r.signal})`);
}

function mtime(p) {
  return existsSync(p) ? statSync(p).mtimeMs : 0;
}

function ensureDependencies() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  const stale = !existsSync(marker) || mtime(lock) > mtime(marker) || mtime(join(root, 'package.json')) > mtime(marker);
  if (!stale) return;
  log('installing npm dependencies');
  run('npm', [existsSync(lock) ? 'ci' : 'install', '--no-audit', '--no-fund']);
}

// Asks for an adapter in a child process: a missing or broken driver can abort the process that
// loads it, and the answer must not take this script down with it.
function probeAdapter() {
  const probe = `
    import('webgpu').then(async ({ create, globals }) => {
      Object.assign(globalThis, globals);
      const gpu = create([]);
      globalThis.__keep = gpu;
      const adapter = await gpu.requestAdapter();
      if (!adapter) { console.log(JSON.stringify({ ok: false })); process.exit(0); }
      console.log(JSON.stringify({ ok: true, name: adapter.info.description || adapter.info.device || adapter.info.vendor }));
      process.exit(0);
    }).catch((e) => { console.log(JSON.stringify({ ok: false, error: String(e && e.message || e) })); process.exit(0); });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || '/tmp' },
    timeout: 60_000,
  });
  const line = (r.stdout || '').trim().split('\n').pop() || '';
  try {
    return JSON.parse(line);
  } catch {
    return { ok: false, error: (r.stderr || '').trim().split('\n').slice(-3).join(' ') || `probe exited with ${r.status ?? r.signal}` };
  }
}

function osRelease() {
  if (!existsSync('/etc/os-release')) return {};
  const out = {};
  for (const line of readFileSync('/etc/os-release', 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m) out[m[1]] = m[2].replace(/^"|"$/g, '');
  }
  return out;
}

const WHAT_TO_INSTALL =
  'No WebGPU adapter was found. Install a GPU driver with Vulkan (Linux), Metal (macOS) or D3D12 (Windows) support, ' +
  "or on Linux without a GPU Mesa's software Vulkan driver: Debian 12: 'apt-get install -t bookworm-backports libvulkan1 mesa-vulkan-drivers' " +
  "(with bookworm-backports in the apt sources; Mesa 22.x is too old for Dawn); Debian 13 / Ubuntu 24.04+: 'apt-get install libvulkan1 mesa-vulkan-drivers'.";

/** Installs Debian/Ubuntu packages as root, or fails with `what` (what a person should install). */
function aptInstall(pkgs, what, opts = {}) {
  const os = osRelease();
  const family = `${os.ID ?? ''} ${os.ID_LIKE ?? ''}`;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (process.platform !== 'linux' || !/debian|ubuntu/.test(family) || !existsSync('/usr/bin/apt-get')) fail(what);
  if (!isRoot) fail(`${what} (Not running as root, so this script cannot install it itself.)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const extra = [];
  if (opts.backports && os.ID === 'debian' && os.VERSION_CODENAME === 'bookworm') {
    const src = '/etc/apt/sources.list.d/bookworm-backports.sources';
    if (!existsSync(src)) {
      log(`adding bookworm-backports to the apt sources (${src})`);
      writeFileSync(
        src,
        'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n' +
          'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n',
      );
    }
    extra.push('-t', 'bookworm-backports');
  }
  log(`installing ${pkgs.join(' ')}${extra.includes('bookworm-backports') ? ' from bookworm-backports' : ''}`);
  run('apt-get', ['update', '-qq'], { env });
  if (opts.noRecommends) extra.push('--no-install-recommends');
  run('apt-get', ['install', '-y', '-qq', ...extra, ...pkgs], { env });
}

function installSoftwareVulkan() {
  aptInstall(['libvulkan1', 'mesa-vulkan-drivers'], WHAT_TO_INSTALL, { backports: true });
}

// The browsers the web app's tests drive (apps/web/src/harness.ts looks in the same places).
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

function ensureChromium() {
  const set = process.env.MPFGVC_CHROMIUM;
  if (set) {
    if (!existsSync(set)) fail(`MPFGVC_CHROMIUM=${set}: no such file`);
    return;
  }
  if (CHROMIUM.some((p) => existsSync(p))) return;
  const os = osRelease();
  // Ubuntu's chromium-browser package only installs a snap; there, a person installs Chrome or Chromium.
  if (os.ID === 'ubuntu') fail('The browser tests need Chromium or Chrome: install Google Chrome, or set MPFGVC_CHROMIUM to a Chromium binary.');
  aptInstall(['chromium'], "The browser tests need Chromium: Debian: 'apt-get install chromium'; elsewhere set MPFGVC_CHROMIUM to a Chromium or Chrome binary.", {
    noRecommends: true, // a headless browser: no fonts, desktop integration or GPU drivers it recommends
  });
}

if (process.env.MPFGVC_SKIP_SETUP === '1') process.exit(0);
ensureDependencies();
if (!args.has('--no-gpu')) {
  let probe = probeAdapter();
  if (!probe.ok) {
    log(`no WebGPU adapter${probe.error ? ` (${probe.error})` : ''}`);
    installSoftwareVulkan();
    probe = probeAdapter();
    if (!probe.ok) fail(`${WHAT_TO_INSTALL}${probe.error ? ` Last error: ${probe.error}` : ''}`);
  }
  log(`WebGPU adapter: ${probe.name}`);
}
if (args.has('--browser')) ensureChromium();
