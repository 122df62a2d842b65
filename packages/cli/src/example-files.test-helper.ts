// What a user's program reads in the library tests: a model file with class names (the demo's
// architecture, untrained) and a bird picture larger than the model's input.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng, requestDevice } from '@mpfgvc/kernels';
import { DEMO_MODEL, MPFGVC } from '@mpfgvc/model';
import { birdClasses, encodePng, generateBird } from '@mpfgvc/train';

/** Writes `model.safetensors` (`classes` bird classes) and `bird.png` (`size` pixels) into `dir`. */
export async function writeExampleFiles(dir: string, classes: number, size: number, seed: number): Promise<void> {
  const dev = await requestDevice();
  const birds = birdClasses(classes);
  const model = new MPFGVC(dev, new Rng(seed), { ...DEMO_MODEL, numClasses: classes, superCategory: 'bird' }, { classIds: [0], sot: 1, eot: 2 });
  model.info = { classes: birds.map((c) => c.name) };
  writeFileSync(join(dir, 'model.safetensors'), await model.save());
  dev.destroy();
  writeFileSync(join(dir, 'bird.png'), await encodePng(generateBird(0, birds[classes - 1]!, 0, size).rgb, size, size));
}
