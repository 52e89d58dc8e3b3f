/** Input types shared by generate() and completionLogprobs(). */

/** One prompt, already tokenized (ids after `<|image_pad|>` expansion, no padding). */
export interface TokenizedPrompt {
  /** Prompt token ids. */
  inputIds: number[];
  /** Row-major [N, 1176] patches of this prompt's images, in order (absent or empty: no image). */
  pixelValues?: Float32Array;
  /** [numImages][3] (t, h, w) grid of each image, in patches. Required when pixelValues is given. */
  imageGridThw?: number[][];
}
