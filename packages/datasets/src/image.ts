import sharp from "sharp";
import { DatasetError } from "./errors";
import { checkRelativeImagePath, realImagePath, resolveImage } from "./paths";
import type { Sample } from "./types";

/** A decoded 8-bit RGB image, row-major HWC (`data.length === width * height * 3`). */
export interface DecodedImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * What a model processor takes for a sample's image: the absolute file path (path images, checked to
 * stay inside `root`) or the embedded bytes. Throws DATASET_MISSING_IMAGE when the file is absent.
 */
export function imageInput(sample: Sample, root: string): string | Uint8Array {
  if ("bytes" in sample.image) return sample.image.bytes;
  const rel = checkRelativeImagePath(sample.image.path, { file: `sample ${sample.id}`, row: 0 });
  const abs = realImagePath(root, rel, { file: `sample ${sample.id}` });
  if (abs === null) {
    throw new DatasetError(`sample ${JSON.stringify(sample.id)}: image file not found: ${resolveImage(root, rel)}`, {
      code: "DATASET_MISSING_IMAGE",
      details: { id: sample.id, image: sample.image.path },
    });
  }
  return abs;
}

/**
 * Decodes a sample's image with sharp to 8-bit RGB (grayscale expanded to 3 channels, transparency
 * flattened over white). No resize: the model's processor does that. Throws DatasetError
 * (DATASET_MISSING_IMAGE / DATASET_UNREADABLE_IMAGE) naming the sample and image.
 */
export async function decodeImage(sample: Sample, root: string): Promise<DecodedImage> {
  const input = imageInput(sample, root);
  const label = typeof input === "string" ? input : `<${input.length} embedded bytes>`;
  try {
    const { data, info } = await sharp(input, { failOn: "error" })
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels === 3) return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
    // single-channel output: expand to RGB
    const out = new Uint8Array(info.width * info.height * 3);
    for (let i = 0, j = 0; i < data.length; i += info.channels, j += 3) out[j] = out[j + 1] = out[j + 2] = data[i];
    return { width: info.width, height: info.height, data: out };
  } catch (e) {
    throw new DatasetError(`sample ${JSON.stringify(sample.id)}: unreadable image ${label}: ${(e as Error).message}`, {
      code: "DATASET_UNREADABLE_IMAGE",
      details: { id: sample.id, image: label },
      cause: e,
    });
  }
}
