export { WriteError, writeFileAtomic, writing } from './atomic.js';
export { ConfigurationError, RunFolderError, TrainingError, TrainingInterrupted } from './errors.js';
export { FileKindError, UnsafePathError, insideFolder, readRegularFile, readRegularFileAsync, readRegularText, realFolder } from './safe-files.js';
export { DATASET_NAMES, type Dataset, DatasetError, type DatasetKind, type Sample } from './datasets/dataset.js';
export { type OpenDatasetOptions, detectLayout, openDataset } from './datasets/open.js';
export { readCub, readNabirds } from './datasets/cub.js';
export { readStanfordDogs } from './datasets/stanford-dogs.js';
export { readFood101 } from './datasets/food101.js';
export { IMAGE_EXTENSIONS, type ImageFolderOptions, readImageFolder, walkImages } from './datasets/image-folder.js';
export { type MatValue, readMat5 } from './datasets/mat5.js';
export {
  BEAKS,
  type BirdAttributes,
  type BirdClass,
  type BirdParts,
  type BirdScene,
  EYE_RINGS,
  MAX_BIRD_CLASSES,
  type RenderedBird,
  TAILS,
  WING_BARS,
  birdClasses,
  birdToPixel,
  generateBird,
  imageSeed,
  partDistance,
  renderBird,
  sampleScene,
} from './synth/birds.js';
export { type Normalization, type SynthBirds, type SynthBirdsOptions, type SynthSplit, makeSynthBirds, rgbToChw } from './synth/dataset.js';
export { type CubLayoutOptions, type CubLayoutSummary, cubImageName, writeCubLayout } from './synth/cub.js';
export { type ContactSheet, contactSheet } from './synth/contact-sheet.js';
export { encodePng } from './synth/png.js';
export { type RgbImage, decodeRgb } from './images/decode.js';
export { type Box, DEFAULT_RRC, EVAL_CROP_RATIO, type RandomResizedCropOptions, centerCropPlan, randomResizedCropBox, roundHalfEven } from './images/transforms.js';
export { orderRng, sampleRng } from './images/streams.js';
export { CLIP_NORMALIZATION, IMAGENET_NORMALIZATION, INCEPTION_NORMALIZATION, type InputNormalization, NORMALIZATION_NAMES, type Rgb, normalizationStats, normalizeInto, parseNormalization } from './images/normalize.js';
export {
  type BatchImages,
  type BatchTask,
  type ImageConfig,
  MAX_IMAGE_BYTES,
  UnreadableImageError,
  imageConfig,
  prepareBatch,
  prepareImage,
  readImage,
  transformInto,
} from './images/preprocess.js';
export { type EpochOrderOptions, type EpochPosition, EpochOrder } from './images/epoch-order.js';
export { type Batch, ImageLoader, type LoaderOptions } from './images/loader.js';
export { type Schedule, learningRate, validateSchedule } from './schedule.js';
export {
  type DataConfig,
  FOLDER_DATA_DEFAULTS,
  OPTIMIZERS,
  SYNTH_DATA_DEFAULTS,
  type StageConfig,
  TRAIN_DEFAULTS,
  type TrainConfig,
  type TrainConfigInput,
  recordedConfig,
  resolveConfig,
  stageDefaults,
  trainConfigSchema,
} from './loop/config.js';
export { type DataBatch, type OpenDataOptions, type RunData, holdOut, openRunData } from './loop/data.js';
export { type EvalRow, MetricsError, MetricsLog, type MetricsRow, type StepRow, parseMetricsRow } from './loop/metrics.js';
export { type TrainResult, train } from './loop/trainer.js';
export { type ResumeInput } from './loop/resume.js';
export { type StageReport, decays } from './loop/stage.js';
export { BEST_MODEL_FILE, BEST_RECORD_FILE, type BestRecord, type TrainHooks } from './loop/run-context.js';
export { LOCK_FILE, type LockOwner, RUN_FILES, type RunLock, clearRun, holdsRun, holdsRunBesidesLock, lockRun, takeRunFolder } from './run-folder.js';
export { type EvalResult, HEADS, type Head, confusionCsv, evaluate } from './eval.js';
export { type ClassRow, classRows, worstFirst } from './per-class.js';
export { type ConfusionSvgOptions, MAX_LABELLED, confusionSvg } from './confusion-svg.js';
export { CARD_WORST_CLASSES, MODEL_CARD_FILE, MODEL_CARD_MARK, type ModelCardInput, type ModelCardStage, isModelCard, isModelCardFile, mdText, modelCard, writeModelCard } from './model-card.js';
export { CHECKPOINT_FILE, STAGE1_CHECKPOINT_FILE, CheckpointError, type CheckpointRecord, type LoadedCheckpoint, type RunPosition, checkpointFile, checkpointTag, hasCheckpoint, parseCheckpointRecord, readCheckpoint, readCheckpointRecord, writeCheckpoint } from './checkpoint.js';
export { FIXED_PROMPT_TEMPLATE, fillPrompt, wordPrompts } from './prompts.js';
export { type DemoOptions, type DemoResult, DEMO_EPOCHS, demoConfig, runDemo } from './demo.js';
export { type CheckpointFolder, type Pretrained, type PretrainedFolders, type VisionFolder, loadPretrained, openCheckpointFolder, openVisionFolder, resolvePretrained } from './pretrained.js';
export { type Classification, Classifier, ClassifierError, type ClassifierOptions, type Explanation, type PrepareImage, type Ranked, type RawImage, rgbOf, softmaxRow, topK } from './classifier/classifier.js';
export { ImageInputError, type LoadClassifierOptions, type NodeImage, loadClassifier, nodeCrop, resolveModelFile } from './classifier/node.js';
