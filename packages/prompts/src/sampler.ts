import { SamplerError } from "./errors";
import type { Template } from "./template";

/** Options of the diversity sampler. */
export interface TemplateSamplerOptions {
  /** Seed of the assignment. Default 0. */
  seed?: number;
  /**
   * Relative weights, by template name (missing names get weight 0) or by position. Default: uniform
   * (the paper mixes its three Appendix A templates; it gives no weights).
   */
  weights?: Record<string, number> | number[];
}

// 32-bit mixing hash (murmur3 finaliser over FNV-1a of the key string): stable across runs and platforms.
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A uniform number in [0, 1) that depends only on (seed, epoch, example). */
export function unitHash(seed: number, epoch: number, example: string | number): number {
  const a = hash32(`${seed}|${epoch}|${typeof example}:${example}`);
  const b = hash32(`${a}#${example}`);
  return (a * 2 ** 21 + (b >>> 11)) / 2 ** 53;
}

/**
 * Prompting diversity (RARL §3.3): assigns one template to each example in each epoch, uniformly or by weight.
 * The choice depends only on (seed, epoch, example id), not on call order, so a resumed run reproduces it.
 */
export class TemplateSampler {
  readonly templates: readonly Template[];
  readonly seed: number;
  private readonly cdf: number[];

  constructor(templates: readonly Template[], opts: TemplateSamplerOptions = {}) {
    if (templates.length === 0) throw new SamplerError("TemplateSampler: no templates given", { code: "SAMPLER_EMPTY" });
    const names = new Set<string>();
    for (const t of templates) {
      if (names.has(t.name)) throw new SamplerError(`TemplateSampler: duplicate template name "${t.name}"`, { code: "SAMPLER_DUPLICATE", details: { template: t.name } });
      names.add(t.name);
    }
    this.templates = templates;
    this.seed = opts.seed ?? 0;
    let w: number[];
    if (opts.weights === undefined) w = templates.map(() => 1);
    else if (Array.isArray(opts.weights)) {
      if (opts.weights.length !== templates.length)
        throw new SamplerError(`TemplateSampler: ${opts.weights.length} weights for ${templates.length} templates`, { code: "SAMPLER_WEIGHTS" });
      w = [...opts.weights];
    } else {
      const byName = opts.weights;
      for (const k of Object.keys(byName)) {
        if (!names.has(k)) throw new SamplerError(`TemplateSampler: weight for unknown template "${k}"`, { code: "SAMPLER_WEIGHTS", details: { template: k } });
      }
      w = templates.map((t) => byName[t.name] ?? 0);
    }
    w.forEach((x, i) => {
      if (!Number.isFinite(x) || x < 0)
        throw new SamplerError(`TemplateSampler: weight of "${templates[i].name}" must be a finite number >= 0, got ${x}`, {
          code: "SAMPLER_WEIGHTS",
          details: { template: templates[i].name },
        });
    });
    const total = w.reduce((a, b) => a + b, 0);
    if (!(total > 0)) throw new SamplerError("TemplateSampler: weights sum to 0", { code: "SAMPLER_WEIGHTS" });
    let acc = 0;
    this.cdf = w.map((x) => (acc += x / total));
  }

  /** The template of `example` (its id or index) in `epoch`. */
  assign(epoch: number, example: string | number): Template {
    const u = unitHash(this.seed, epoch, example);
    let i = this.cdf.findIndex((c) => u < c);
    if (i < 0) i = this.cdf.length - 1;
    while (this.cdf[i] === (i > 0 ? this.cdf[i - 1] : 0) && i > 0) i--; // never land on a zero-weight template
    return this.templates[i];
  }

  /** Templates for a whole epoch, in the order of `examples`. */
  assignEpoch(epoch: number, examples: readonly (string | number)[]): Template[] {
    return examples.map((e) => this.assign(epoch, e));
  }
}
