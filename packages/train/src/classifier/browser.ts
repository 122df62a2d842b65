// The classifier in a page: a model from a URL, a File/Blob or bytes, images as anything a canvas
// draws (<img>, ImageBitmap, ImageData, a File, <canvas>, <video>) or pixels in memory.
import { type Device, type DeviceOptions, requestDevice } from '@mpfgvc/kernels';
import { centerCropPlan } from '../images/transforms.js';
import { Classifier, ClassifierError, type ClassifierOptions, type RawImage, rgbOf } from './classifier.js';

/** An image in a page: a canvas image source, a File/Blob holding an encoded image, or pixels. */
export type BrowserImage = ImageBitmapSource | RawImage;

function isRaw(input: BrowserImage): input is RawImage {
  const r = input as RawImage;
  return typeof r.width === 'number' && typeof r.height === 'number' && (r.data instanceof Uint8Array || r.data instanceof Uint8ClampedArray) && !(typeof ImageData !== 'undefined' && input instanceof ImageData);
}

/**
 * The evaluation crop in a page: the shorter side resized to floor(S / cropRatio) and a centred
 * S×S crop, as Node does it (the canvas's smoothing stands in for sharp's bilinear filter, so
 * pixels can differ by a level or two).
 */
export async function browserCrop(input: BrowserImage, size: number, cropRatio: number): Promise<Uint8Array> {
  let source: ImageBitmapSource = input as ImageBitmapSource;
  if (isRaw(input)) {
    const rgb = rgbOf(input);
    const rgba = new Uint8ClampedArray(input.width * input.height * 4);
    for (let i = 0; i < input.width * input.height; i++) {
      for (let c = 0; c < 3; c++) rgba[4 * i + c] = rgb[3 * i + c]!;
      rgba[4 * i + 3] = 255;
    }
    source = new ImageData(rgba, input.width, input.height);
  }
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(source);
  } catch (e) {
    throw new ClassifierError(`image: the browser cannot decode it (${(e as Error).message})`);
  }
  const plan = centerCropPlan(bitmap.width, bitmap.height, size, cropRatio);
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext('2d')!;
  ctx.imageSmoothingQuality = 'high';
  // Resize to the plan's size, then take the crop: one drawImage with the source rectangle scaled back.
  const sx = plan.crop.left * (bitmap.width / plan.resizeWidth);
  const sy = plan.crop.top * (bitmap.height / plan.resizeHeight);
  const sw = size * (bitmap.width / plan.resizeWidth);
  const sh = size * (bitmap.height / plan.resizeHeight);
  ctx.drawImage(bitmap, sx, sy, sw, sh, 0, 0, size, size);
  bitmap.close();
  return rgbOf({ data: ctx.getImageData(0, 0, size, size).data, width: size, height: size, channels: 4 });
}

export interface LoadBrowserClassifierOptions extends ClassifierOptions {
  /** The device to run on (default: one opened for the classifier, and destroyed by its dispose()). */
  device?: Device;
  deviceOptions?: DeviceOptions;
}

/** A trained model (`model.safetensors` as `mpfgvc train` writes it) from a URL, a File/Blob or its bytes. */
export async function loadClassifier(source: string | URL | Blob | ArrayBuffer | Uint8Array, opts: LoadBrowserClassifierOptions = {}): Promise<Classifier<BrowserImage>> {
  let bytes: Uint8Array;
  let name = 'model.safetensors';
  if (typeof source === 'string' || source instanceof URL) {
    name = String(source);
    const res = await fetch(source);
    if (!res.ok) throw new ClassifierError(`${name}: HTTP ${res.status} ${res.statusText}`);
    bytes = new Uint8Array(await res.arrayBuffer());
  } else if (source instanceof Blob) {
    name = (source as File).name ?? name;
    bytes = new Uint8Array(await source.arrayBuffer());
  } else bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
  const device = opts.device ?? (await requestDevice(opts.deviceOptions));
  const owned = !opts.device;
  try {
    return Classifier.fromBytes(device, bytes, name, browserCrop, opts, owned ? () => device.destroy() : undefined);
  } catch (e) {
    if (owned) device.destroy();
    throw e;
  }
}
