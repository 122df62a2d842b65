export { writeFileAtomic } from './atomic.js';
export { DATASET_NAMES, type Dataset, type DatasetKind, type Sample } from './datasets/dataset.js';
export { type OpenDatasetOptions, detectLayout, openDataset } from './datasets/open.js';
export { readCub, readNabirds } from './datasets/cub.js';
export { readStanfordDogs } from './datasets/stanford-dogs.js';
export { readFood101 } from './datasets/food101.js';
export { type ImageFolderOptions, readImageFolder } from './datasets/image-folder.js';
export { type MatValue, readMat5 } from './datasets/mat5.js';
