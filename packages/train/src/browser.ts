// What of this package runs in a browser page: the synthetic birds, input normalisation, the
// learning-rate schedule, the seeded epoch order and evaluation. Nothing here imports a Node
// module (files, worker threads, sharp); the rest of the package (datasets on disk, the image
// pipeline, the run loop with its checkpoints) is Node's.
export { type BirdClass, MAX_BIRD_CLASSES, birdClasses, generateBird, renderBird } from './synth/birds.js';
export { type Normalization, type SynthBirds, type SynthBirdsOptions, type SynthSplit, freshEpochFirstIndex, makeSynthBirds, renderSynthSplit, resolveSynthOptions, rgbToChw } from './synth/dataset.js';
export { CLIP_NORMALIZATION, IMAGENET_NORMALIZATION, INCEPTION_NORMALIZATION, type InputNormalization, NORMALIZATION_NAMES, type Rgb, normalizationStats, normalizeInto, parseNormalization } from './images/normalize.js';
export { EVAL_CROP_RATIO, centerCropPlan } from './images/transforms.js';
export { type EpochPosition, EpochOrder } from './images/epoch-order.js';
export { orderRng, sampleRng } from './images/streams.js';
export { type Schedule, learningRate, validateSchedule } from './schedule.js';
export { type EvalResult, HEADS, type Head, evaluate } from './eval.js';
export { type Classification, Classifier, ClassifierError, type ClassifierOptions, type Explanation, type PrepareImage, type Ranked, type RawImage, rgbOf, softmaxRow, topK } from './classifier/classifier.js';
export { type BrowserImage, type LoadBrowserClassifierOptions, browserCrop, loadClassifier } from './classifier/browser.js';
