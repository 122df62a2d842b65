import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { detectLayout, openDataset } from './open.js';

const temp = mkdtempSync(join(tmpdir(), 'mpfgvc-datasets-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** A layout from {relative path: contents}; images are empty files, readers never open them. */
function layout(name: string, files: Record<string, string | Buffer>): string {
  const root = join(temp, name);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}

const cubFiles = () => ({
  'images.txt': '1 001.Black_footed_Albatross/a_1.jpg\n2 001.Black_footed_Albatross/a_2.jpg\n3 002.Laysan_Albatross/b_1.jpg\n4 002.Laysan_Albatross/b_2.jpg\n',
  'image_class_labels.txt': '1 1\n2 1\n3 2\n4 2\n',
  'train_test_split.txt': '1 1\n2 0\n3 0\n4 1\n',
  'classes.txt': '1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n',
  'images/001.Black_footed_Albatross/a_1.jpg': '',
});

describe('CUB-200-2011', () => {
  it('reads the split and 1-based ids', () => {
    const root = layout('cub', cubFiles());
    const ds = openDataset('cub', root);
    expect(ds.classes).toEqual(['Black footed Albatross', 'Laysan Albatross']);
    expect(ds.superCategory).toBe('bird');
    expect(ds.train).toEqual([
      { path: join(root, 'images/001.Black_footed_Albatross/a_1.jpg'), label: 0 },
      { path: join(root, 'images/002.Laysan_Albatross/b_2.jpg'), label: 1 },
    ]);
    expect(ds.test.map((s) => s.label)).toEqual([0, 1]);
  });

  it('is detected, also from the folder above CUB_200_2011/', () => {
    const files = Object.fromEntries(Object.entries(cubFiles()).map(([k, v]) => [`CUB_200_2011/${k}`, v]));
    const root = layout('cub-parent', files);
    expect(detectLayout(root)).toEqual({ kind: 'cub', root: join(root, 'CUB_200_2011') });
    expect(openDataset('auto', root).train.length).toBe(2);
  });

  it('names the missing file and bad lines', () => {
    const files: Record<string, string> = cubFiles();
    delete files['train_test_split.txt'];
    const root = layout('cub-missing', files);
    expect(() => openDataset('cub', root)).toThrow(`CUB-200-2011 at ${root}: missing train_test_split.txt`);
    expect(() => openDataset('cub', join(temp, 'nothing-here'))).toThrow(/CUB-200-2011 at .*nothing-here: missing images\//);
    const bad = layout('cub-bad', { ...cubFiles(), 'train_test_split.txt': '1 1\n2 yes\n' });
    expect(() => openDataset('cub', bad)).toThrow(/train_test_split.txt line 2: expected 0 or 1, got 'yes'/);
    const unlabelled = layout('cub-unlabelled', { ...cubFiles(), 'image_class_labels.txt': '1 1\n2 1\n3 2\n' });
    expect(() => openDataset('cub', unlabelled)).toThrow(/image 4 \(002.Laysan_Albatross\/b_2.jpg\) has no entry in image_class_labels.txt/);
  });
});

describe('NABirds', () => {
  // Sparse class ids: 0 and 1 are inner nodes of the taxonomy, 295 / 313 / 998 are leaves, and
  // only 295 and 998 label images.
  const files = {
    'images.txt': 'aa01 0295/aa01.jpg\nbb02 0998/bb02.jpg\ncc03 0295/cc03.jpg\n',
    'image_class_labels.txt': 'aa01 295\nbb02 998\ncc03 295\n',
    'train_test_split.txt': 'aa01 1\nbb02 1\ncc03 0\n',
    'classes.txt': '0 Birds\n1 Perching Birds\n295 Black-bellied Whistling-Duck\n313 Canada Goose\n998 Wood Duck (Female)\n',
    'hierarchy.txt': '1 0\n295 1\n313 1\n998 1\n',
    'images/0295/aa01.jpg': '',
  };

  it('maps the used class ids to contiguous labels', () => {
    const root = layout('nabirds', files);
    const ds = openDataset('auto', root);
    expect(ds.kind).toBe('nabirds');
    expect(ds.classes).toEqual(['Black-bellied Whistling-Duck', 'Wood Duck (Female)']);
    expect(ds.train).toEqual([
      { path: join(root, 'images/0295/aa01.jpg'), label: 0 },
      { path: join(root, 'images/0998/bb02.jpg'), label: 1 },
    ]);
    expect(ds.test).toEqual([{ path: join(root, 'images/0295/cc03.jpg'), label: 0 }]);
  });

  it('requires hierarchy.txt', () => {
    const { ['hierarchy.txt']: _, ...rest } = files;
    const root = layout('nabirds-no-hierarchy', rest);
    expect(() => openDataset('nabirds', root)).toThrow(`NABirds at ${root}: missing hierarchy.txt`);
  });
});

describe('Stanford Dogs', () => {
  const images = {
    'Images/n02085620-Chihuahua/n02085620_1.jpg': '',
    'Images/n02085782-Japanese_spaniel/n02085782_1.jpg': '',
  };
  const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url);
  const want = (root: string) => ({
    classes: ['Chihuahua', 'Japanese spaniel'],
    train: [
      { path: join(root, 'Images/n02085620-Chihuahua/n02085620_1.jpg'), label: 0 },
      { path: join(root, 'Images/n02085620-Chihuahua/n02085620_2.jpg'), label: 0 },
      { path: join(root, 'Images/n02085782-Japanese_spaniel/n02085782_1.jpg'), label: 1 },
      { path: join(root, 'Images/n02085782-Japanese_spaniel/n02085782_2.jpg'), label: 1 },
    ],
  });

  it('reads the official .mat lists', () => {
    const root = layout('dogs-mat', images);
    copyFileSync(fixture('dogs_train_list.mat'), join(root, 'train_list.mat'));
    copyFileSync(fixture('dogs_test_list.mat'), join(root, 'test_list.mat'));
    const ds = openDataset('auto', root);
    expect(ds.kind).toBe('stanford-dogs');
    expect(ds.superCategory).toBe('dog');
    expect({ classes: ds.classes, train: ds.train }).toEqual(want(root));
    expect(ds.test.map((s) => s.label)).toEqual([0, 1]);
  });

  it('reads text lists under lists/', () => {
    const root = layout('dogs-txt', {
      ...images,
      'lists/train_list.txt': 'n02085620-Chihuahua/n02085620_1.jpg\nn02085620-Chihuahua/n02085620_2.jpg\nn02085782-Japanese_spaniel/n02085782_1.jpg\nn02085782-Japanese_spaniel/n02085782_2.jpg\n',
      'lists/test_list.txt': 'n02085782-Japanese_spaniel/n02085782_3.jpg 2\n',
    });
    const ds = openDataset('stanford-dogs', root);
    expect({ classes: ds.classes, train: ds.train }).toEqual(want(root));
    expect(ds.test).toEqual([{ path: join(root, 'Images/n02085782-Japanese_spaniel/n02085782_3.jpg'), label: 1 }]);
  });

  it('says which lists it looked for, and catches a list made for other folders', () => {
    const root = layout('dogs-nolists', images);
    expect(() => openDataset('stanford-dogs', root)).toThrow(
      `Stanford Dogs at ${root}: missing train_list.mat (official lists.tar) or train_list.txt (text list), looked in ./ and lists/`,
    );
    const other = layout('dogs-other', { 'Images/n02085620-Chihuahua/x.jpg': '', 'Images/n09999999-Zzz/y.jpg': '', 'test_list.txt': '' });
    copyFileSync(fixture('dogs_train_list.mat'), join(other, 'train_list.mat'));
    expect(() => openDataset('stanford-dogs', other)).toThrow(/n02085782-Japanese_spaniel\/n02085782_1.jpg has label 2, but Images\/ sorts its folder as absent/);
  });
});

describe('Food-101', () => {
  it('reads meta/ and the image paths', () => {
    const root = layout('food', {
      'meta/classes.txt': 'apple_pie\nbaby_back_ribs\n',
      'meta/train.txt': 'apple_pie/1005649\nbaby_back_ribs/1\n',
      'meta/test.txt': 'baby_back_ribs/2\n',
      'images/apple_pie/1005649.jpg': '',
    });
    const ds = openDataset('auto', root);
    expect(ds.kind).toBe('food101');
    expect(ds.classes).toEqual(['apple pie', 'baby back ribs']);
    expect(ds.superCategory).toBe('food');
    expect(ds.train).toEqual([
      { path: join(root, 'images/apple_pie/1005649.jpg'), label: 0 },
      { path: join(root, 'images/baby_back_ribs/1.jpg'), label: 1 },
    ]);
    expect(ds.test).toEqual([{ path: join(root, 'images/baby_back_ribs/2.jpg'), label: 1 }]);
  });

  it('names the missing file', () => {
    const root = layout('food-missing', { 'meta/classes.txt': 'apple_pie\n', 'meta/train.txt': '', 'images/x': '' });
    expect(() => openDataset('food101', root)).toThrow(`Food-101 at ${root}: missing meta/test.txt`);
  });
});

describe('ImageFolder', () => {
  const files = {
    'train/warbler/b.jpg': '',
    'train/warbler/a.PNG': '',
    'train/warbler/notes.txt': '',
    'train/albatross/deep/x.jpeg': '',
    'val/warbler/c.jpg': '',
  };

  it('sorts classes and files, and takes the super-category as an option', () => {
    const root = layout('folder', files);
    const ds = openDataset('auto', root, { superCategory: 'bird' });
    expect(ds.classes).toEqual(['albatross', 'warbler']);
    expect(ds.superCategory).toBe('bird');
    expect(ds.train).toEqual([
      { path: join(root, 'train/albatross/deep/x.jpeg'), label: 0 },
      { path: join(root, 'train/warbler/a.PNG'), label: 1 },
      { path: join(root, 'train/warbler/b.jpg'), label: 1 },
    ]);
    expect(ds.test).toEqual([{ path: join(root, 'val/warbler/c.jpg'), label: 1 }]);
  });

  it('requires the super-category, the eval folder and known classes', () => {
    const root = layout('folder-2', files);
    expect(() => openDataset('imagefolder', root)).toThrow(`ImageFolder at ${root}: the superCategory option is required (e.g. 'bird')`);
    const noVal = layout('folder-noval', { 'train/a/x.jpg': '' });
    expect(() => openDataset('imagefolder', noVal, { superCategory: 'car' })).toThrow(`ImageFolder at ${noVal}: missing val/`);
    const testOnly = layout('folder-test', { 'train/a/x.jpg': '', 'test/a/y.jpg': '' });
    expect(openDataset('imagefolder', testOnly, { superCategory: 'car' }).test).toEqual([{ path: join(testOnly, 'test/a/y.jpg'), label: 0 }]);
    const stray = layout('folder-stray', { 'train/a/x.jpg': '', 'val/b/y.jpg': '' });
    expect(() => openDataset('imagefolder', stray, { superCategory: 'car' })).toThrow(/val\/b is not a class of train\//);
  });
});

describe('openDataset auto', () => {
  it('lists the layouts it looked for', () => {
    const root = layout('unknown', { 'readme.txt': '' });
    expect(() => openDataset('auto', root)).toThrow(/cannot detect a dataset layout at .*unknown: expected images.txt \+ hierarchy.txt \(NABirds\)/);
  });

  it('lets the caller override the super-category', () => {
    const root = layout('cub-override', cubFiles());
    expect(openDataset('auto', root, { superCategory: 'seabird' }).superCategory).toBe('seabird');
  });
});

describe('lists that name files outside the dataset', () => {
  it('are refused with the file and line: ../ and absolute paths', () => {
    const up = layout('cub-up', { ...cubFiles(), 'images.txt': '1 001.Black_footed_Albatross/a_1.jpg\n2 ../../../etc/passwd\n3 002.Laysan_Albatross/b_1.jpg\n4 002.Laysan_Albatross/b_2.jpg\n' });
    expect(() => openDataset('cub', up)).toThrow(`CUB-200-2011 at ${up}: images.txt line 2: '../../../etc/passwd' climbs out with '..'; only paths inside the dataset folder are read`);
    const abs = layout('cub-abs', { ...cubFiles(), 'images.txt': '1 /dev/zero\n2 001.Black_footed_Albatross/a_2.jpg\n3 002.Laysan_Albatross/b_1.jpg\n4 002.Laysan_Albatross/b_2.jpg\n' });
    expect(() => openDataset('cub', abs)).toThrow(`CUB-200-2011 at ${abs}: images.txt line 1: '/dev/zero' is an absolute path; only paths inside the dataset folder are read`);
    const food = layout('food-up', { 'images/.keep': '', 'meta/classes.txt': 'apple_pie\n', 'meta/train.txt': 'apple_pie/../../../x\n', 'meta/test.txt': 'apple_pie/1\n' });
    expect(() => openDataset('food101', food)).toThrow(`Food-101 at ${food}: meta/train.txt line 1: 'apple_pie/../../../x.jpg' climbs out with '..'`);
    const dogs = layout('dogs-up', { 'Images/n02085620-Chihuahua/a.jpg': '', 'train_list.txt': 'n02085620-Chihuahua/../../../../etc/passwd\n', 'test_list.txt': 'n02085620-Chihuahua/a.jpg\n' });
    expect(() => openDataset('stanford-dogs', dogs)).toThrow(`Stanford Dogs at ${dogs}: train_list.txt line 1: 'n02085620-Chihuahua/../../../../etc/passwd' climbs out with '..'`);
  });

  it('are read only as regular files: a named pipe as a list fails at once instead of waiting', () => {
    const root = layout('cub-fifo', cubFiles());
    rmSync(join(root, 'classes.txt'));
    execFileSync('mkfifo', [join(root, 'classes.txt')]);
    expect(() => openDataset('cub', root)).toThrow(`CUB-200-2011 at ${root}: classes.txt is not a regular file`);
  });
});

