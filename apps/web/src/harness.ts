// Node side of the browser tests and the measurement script: the system Chromium (never a
// downloaded one) driven through playwright-core, with WebGPU on whatever adapter it offers —
// Chromium's SwiftShader on a machine without a GPU. Playwright gives each launch a fresh
// temporary profile.
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Browser, type Page, chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
/** apps/web, from src/ (tests) or dist/tsc/ (compiled scripts). */
export const WEB_ROOT = existsSync(join(here, '..', 'package.json')) ? join(here, '..') : join(here, '..', '..');

/** The flags that give headless Chromium a WebGPU adapter on a machine without a GPU. */
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--no-default-browser-check',
];

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

/** The browser binary: $MPFGVC_CHROMIUM, else the system's Chromium or Chrome. */
export function chromiumPath(): string {
  const set = process.env.MPFGVC_CHROMIUM;
  if (set) {
    if (!existsSync(set)) throw new Error(`MPFGVC_CHROMIUM=${set}: no such file`);
    return set;
  }
  const found = CANDIDATES.find((p) => existsSync(p));
  if (!found) throw new Error(`no Chromium found (looked for ${CANDIDATES.join(', ')}); \`npm run setup\` installs Debian's chromium, or set MPFGVC_CHROMIUM`);
  return found;
}

export interface PageSession {
  browser: Browser;
  page: Page;
  url: string;
  /** What the page printed to its console, for failure messages. */
  console: string[];
  close(): Promise<void>;
}

/**
 * Serves the built page (apps/web/dist, and `files` under /files/), starts Chromium and opens the
 * page at `query`; waits for the page's adapter and fails naming the page's own message where
 * there is none.
 */
export async function openPage(opts: { files?: string; query?: string; viewport?: { width: number; height: number } } = {}): Promise<PageSession> {
  const { serve } = (await import(pathToFileURL(join(WEB_ROOT, 'serve.mjs')).href)) as { serve: (o: { root: string; port?: number; files?: string }) => Promise<{ server: Server; url: string }> };
  const dist = join(WEB_ROOT, 'dist');
  if (!existsSync(join(dist, 'app.js'))) throw new Error(`${dist}/app.js is missing: build the page first (npm run build)`);
  const { server, url } = await serve({ root: dist, port: 0, ...(opts.files ? { files: opts.files } : {}) });
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS, headless: true, timeout: 60_000 });
    const page = await browser.newPage({ viewport: opts.viewport ?? { width: 1280, height: 1000 } });
    const log: string[] = [];
    page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    await page.goto(url + (opts.query ?? ''));
    await page.waitForFunction(() => 'mpfgvc' in window, undefined, { timeout: 60_000 });
    const adapter = await page.evaluate(() => (window as unknown as { mpfgvc: { ready: Promise<string> } }).mpfgvc.ready.then((n) => ({ ok: true as const, n }), (e: Error) => ({ ok: false as const, n: e.message })));
    if (!adapter.ok) throw new Error(`the page found no WebGPU adapter in ${chromiumPath()}: ${adapter.n}\n${log.join('\n')}`);
    const b = browser;
    return {
      browser: b,
      page,
      url,
      console: log,
      close: async () => {
        await b.close();
        server.close();
      },
    };
  } catch (e) {
    await browser?.close();
    server.close();
    throw e;
  }
}
