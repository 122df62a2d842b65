import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileKindError, UnsafePathError, childFile, insideFolder, readRegularFile, realFolder, relativeName } from './safe-files.js';

const temp = realFolder(mkdtempSync(join(tmpdir(), 'mpfgvc-safe-')));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('names read from data files', () => {
  it('stay relative and inside: no absolute path, no .., no NUL', () => {
    expect(relativeName('001.Albatross/a_1.jpg', 'images.txt line 1')).toBe('001.Albatross/a_1.jpg');
    expect(relativeName('a/./b/c.jpg', 'x')).toBe('a/b/c.jpg');
    expect(() => relativeName('a/../../etc/passwd', 'images.txt line 2')).toThrow(new UnsafePathError("images.txt line 2: 'a/../../etc/passwd' climbs out with '..'; only paths inside the dataset folder are read"));
    expect(() => relativeName('..\\windows', 'l')).toThrow(UnsafePathError);
    expect(() => relativeName('/etc/passwd', 'l')).toThrow(/is an absolute path/);
    expect(() => relativeName('C:\\boot.ini', 'l')).toThrow(/is an absolute path/);
    expect(() => relativeName('a\0b', 'l')).toThrow(/NUL/);
    expect(() => childFile(temp, '../x', 'checkpoint.json')).toThrow("checkpoint.json: '../x' is not a plain file name");
  });

  it('resolve inside their folder after symlinks', () => {
    mkdirSync(join(temp, 'root'));
    writeFileSync(join(temp, 'secret'), 'x');
    symlinkSync(join(temp, 'secret'), join(temp, 'root', 'link'));
    symlinkSync(join(temp, 'root'), join(temp, 'root-alias'));
    writeFileSync(join(temp, 'root', 'ok'), 'y');
    const root = realFolder(join(temp, 'root-alias'));
    expect(insideFolder(root, join(temp, 'root-alias', 'ok'), 'image')).toBe(join(temp, 'root', 'ok'));
    expect(() => insideFolder(root, join(temp, 'root', 'link'), 'image')).toThrow(`image ${join(temp, 'root', 'link')} resolves to ${join(temp, 'secret')}, outside ${join(temp, 'root')} (symlinks are followed)`);
  });
});

describe('readRegularFile', () => {
  it('refuses a named pipe, a device and a folder at once, and files above the size limit', () => {
    const fifo = join(temp, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(() => readRegularFile(fifo, { what: 'model' })).toThrow(new FileKindError(`model ${fifo}: a named pipe, not a regular file`));
    expect(() => readRegularFile('/dev/zero', { what: 'image' })).toThrow('image /dev/zero: a device, not a regular file');
    expect(() => readRegularFile(temp)).toThrow(`file ${temp}: a folder, not a regular file`);
    writeFileSync(join(temp, 'big'), Buffer.alloc(100));
    expect(() => readRegularFile(join(temp, 'big'), { maxBytes: 99 })).toThrow(`file ${join(temp, 'big')}: 100 bytes, more than the 99 this reader accepts`);
    expect(readRegularFile(join(temp, 'big')).length).toBe(100);
  });
});
