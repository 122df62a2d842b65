// Writes the synthetic birds to disk in the layout of the CUB-200-2011 archive, so the demo data
// goes through exactly the reader and image pipeline that real CUB does. Everything is written
// into `<dir>.partial` and renamed to `<dir>` at the end: an interrupted write leaves at most a
// `.partial` folder (removed by the next write), never a `<dir>` that looks complete.
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BirdClass, type BirdParts, birdClasses, generateBird } from './birds.js';
import { type SynthBirdsOptions, resolveSynthOptions } from './dataset.js';
import { encodePng } from './png.js';

export interface CubLayoutOptions extends Omit<SynthBirdsOptions, 'normalize'> {
  /** Replace an existing `dir` (default: refuse to touch it). */
  overwrite?: boolean;
}

export interface CubLayoutSummary {
  dir: string;
  images: number;
  train: number;
  test: number;
  classes: number;
}

// The keypoints written to parts/part_locs.txt, in CUB's 1-based part-id order of this file.
const PART_KEYS = ['beakTip', 'eye', 'wingBar', 'tailTip', 'crown'] as const satisfies readonly (keyof BirdParts)[];
const PART_NAMES: Record<(typeof PART_KEYS)[number], string> = { beakTip: 'beak', eye: 'eye', wingBar: 'wing bar', tailTip: 'tail', crown: 'crown' };
// Images encoded concurrently: sharp runs them on its own thread pool.
const BATCH = 32;

/** The file name of image `index` of `cls`, relative to `images/`. */
export function cubImageName(cls: BirdClass, index: number): string {
  return `${cls.dirName}/${cls.name.replaceAll(' ', '_')}_${String(index + 1).padStart(4, '0')}.png`;
}

/**
 * Generates the dataset of `opts` into `dir` as CUB-200-2011 lays it out: images.txt,
 * image_class_labels.txt, train_test_split.txt, classes.txt, bounding_boxes.txt,
 * parts/parts.txt, parts/part_locs.txt and images/<class dir>/<name>.png, ids 1-based and
 * class-major. `synth.json` adds the options and each class's attributes and prompt.
 */
export async function writeCubLayout(dir: string, opts: CubLayoutOptions = {}): Promise<CubLayoutSummary> {
  const o = resolveSynthOptions(opts);
  const classes = birdClasses(o.numClasses);
  if (existsSync(dir) && !opts.overwrite) throw new Error(`writeCubLayout: ${dir} already exists (pass overwrite to replace it)`);
  const tmp = `${dir}.partial`;
  await rm(tmp, { recursive: true, force: true });
  try {
    await mkdir(join(tmp, 'parts'), { recursive: true });
    for (const cls of classes) await mkdir(join(tmp, 'images', cls.dirName), { recursive: true });

    const images: string[] = [];
    const labels: string[] = [];
    const split: string[] = [];
    const boxes: string[] = [];
    const partLocs: string[] = [];
    const perClass = o.trainPerClass + o.testPerClass;
    const jobs: { id: number; cls: BirdClass; index: number }[] = [];
    for (const cls of classes) for (let i = 0; i < perClass; i++) jobs.push({ id: jobs.length + 1, cls, index: i });
    for (let b = 0; b < jobs.length; b += BATCH) {
      await Promise.all(
        jobs.slice(b, b + BATCH).map(async ({ id, cls, index }) => {
          const { rgb, parts } = generateBird(o.seed, cls, index, o.size);
          const name = cubImageName(cls, index);
          images[id - 1] = `${id} ${name}`;
          labels[id - 1] = `${id} ${cls.index + 1}`;
          split[id - 1] = `${id} ${index < o.trainPerClass ? 1 : 0}`;
          const [x0, y0, x1, y1] = parts.box;
          boxes[id - 1] = `${id} ${fmt(x0)} ${fmt(y0)} ${fmt(x1 - x0)} ${fmt(y1 - y0)}`;
          partLocs[id - 1] = PART_KEYS.map((k, p) => {
            const [x, y] = parts[k];
            const visible = x >= 0 && y >= 0 && x < o.size && y < o.size;
            return `${id} ${p + 1} ${visible ? fmt(x) : '0.0'} ${visible ? fmt(y) : '0.0'} ${visible ? 1 : 0}`;
          }).join('\n');
          await writeFile(join(tmp, 'images', name), await encodePng(rgb, o.size, o.size));
        }),
      );
    }
    const lines = (rows: string[]) => rows.join('\n') + '\n';
    await writeFile(join(tmp, 'images.txt'), lines(images));
    await writeFile(join(tmp, 'image_class_labels.txt'), lines(labels));
    await writeFile(join(tmp, 'train_test_split.txt'), lines(split));
    await writeFile(join(tmp, 'classes.txt'), lines(classes.map((c) => `${c.index + 1} ${c.dirName}`)));
    await writeFile(join(tmp, 'bounding_boxes.txt'), lines(boxes));
    await writeFile(join(tmp, 'parts', 'parts.txt'), lines(PART_KEYS.map((k, p) => `${p + 1} ${PART_NAMES[k]}`)));
    await writeFile(join(tmp, 'parts', 'part_locs.txt'), lines(partLocs));
    const meta = { generator: 'mpfgvc synthetic birds', ...o, superCategory: 'bird', classes: classes.map((c) => ({ id: c.index + 1, name: c.name, dir: c.dirName, description: c.description, attributes: c.attributes })) };
    await writeFile(join(tmp, 'synth.json'), JSON.stringify(meta, null, 1) + '\n');

    if (existsSync(dir)) {
      const old = `${dir}.old-${process.pid}`;
      await rename(dir, old);
      await rename(tmp, dir);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, dir);
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return { dir, images: classes.length * (o.trainPerClass + o.testPerClass), train: classes.length * o.trainPerClass, test: classes.length * o.testPerClass, classes: classes.length };
}

function fmt(v: number): string {
  return v.toFixed(1);
}
