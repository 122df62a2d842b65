// `npm run web`: serves the built page (dist/) on 127.0.0.1 and prints its URL. Static files only;
// a path that leaves dist/ is refused. `--port N` (default 5178; 0 picks a free one).
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, extname, join, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.safetensors': 'application/octet-stream',
};

/**
 * Serves `root` (and, under `/files/`, the folder `files` when given: the tests' fixtures) on
 * 127.0.0.1:`port`; resolves to the server and its URL.
 * @param {{ root: string, port?: number, files?: string }} opts
 * @returns {Promise<{ server: import('node:http').Server, url: string }>}
 */
export async function serve({ root, port = 5178, files }) {
  const roots = { '/': await realpath(root), ...(files ? { '/files/': await realpath(files) } : {}) };
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
      const prefix = path.startsWith('/files/') && roots['/files/'] ? '/files/' : '/';
      const base = roots[prefix];
      const rel = path.slice(prefix.length) || 'index.html';
      const file = await realpath(join(base, rel));
      if (file !== base && !file.startsWith(base + sep)) throw Object.assign(new Error('outside'), { code: 'ENOENT' });
      if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve(undefined)));
  const address = server.address();
  return { server, url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}/` };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 5178;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port must be an integer 0-65535, got ${process.argv[i + 1]}`);
    process.exit(2);
  }
  const here = dirname(fileURLToPath(import.meta.url));
  const { url } = await serve({ root: join(here, 'dist'), port });
  console.log(`MP-FGVC web app: ${url}  (Ctrl-C stops it)`);
  console.log('It needs a browser with WebGPU: Chrome/Edge 113+, Safari 26+, Firefox 141+ on Windows; on Linux start Chromium with --enable-unsafe-webgpu.');
}
