/**
 * `npm run bench:2b` (in packages/model): writes a random checkpoint with Qwen2-VL-2B-Instruct's exact config
 * (BF16, ~4.4 GB, in a temp folder, deleted afterwards), loads it with weightResidency "host" (frozen weights as
 * host Float32Arrays, uploaded per layer: 8.8 GB of float32 does not fit the ~4 GiB wasm heap) and runs one forward
 * of a prompt with one 448x448 image. Records load time, forward time and peak RSS in bench/RESULTS_2B.md
 * (bench/run.ts includes that file in RESULTS.md).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { initBackend, writeFileAtomic } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { expectedWeights, loadQwen2VL, parseQwen2VLConfig, QWEN2_VL_2B_INSTRUCT_CONFIG } from "../src/qwen2_vl/index";


/** Streams a random BF16 safetensors file (never holds more than one 32 MB chunk). Returns its size in bytes. */
function writeRandomBf16(file: string, shapes: Map<string, number[]>): number {
  const names = [...shapes.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let off = 0;
  for (const n of names) {
    const len = shapes.get(n)!.reduce((a, b) => a * b, 1) * 2;
    header[n] = { dtype: "BF16", shape: shapes.get(n), data_offsets: [off, off + len] };
    off += len;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += " ";
  const fd = fs.openSync(file, "w");
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(json.length));
  fs.writeSync(fd, lenBuf);
  fs.writeSync(fd, json);
  const CH = 16 * 1024 * 1024; // elements per chunk
  const buf = new Uint16Array(CH);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let s = 12345;
  for (const n of names) {
    const count = shapes.get(n)!.reduce((a, b) => a * b, 1);
    const isNorm = /norm|ln_q/.test(n) && n.endsWith(".weight");
    for (let done = 0; done < count; done += CH) {
      const m = Math.min(CH, count - done);
      for (let i = 0; i < m; i++) {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        f[0] = isNorm ? 1 : ((s >>> 0) / 4294967296 - 0.5) * 0.07; // uniform, std ~0.02
        buf[i] = u[0] >>> 16;
      }
      fs.writeSync(fd, new Uint8Array(buf.buffer, 0, m * 2));
    }
  }
  fs.closeSync(fd);
  return 8 + json.length + off;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const backend = await initBackend();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-qwen2vl-2b-"));
try {
  const cfg = parseQwen2VLConfig(QWEN2_VL_2B_INSTRUCT_CONFIG, "Qwen2-VL-2B-Instruct config");
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(QWEN2_VL_2B_INSTRUCT_CONFIG, null, 2));
  let t0 = performance.now();
  const bytes = writeRandomBf16(path.join(dir, "model.safetensors"), expectedWeights(cfg));
  const writeS = (performance.now() - t0) / 1000;
  console.error(`wrote ${(bytes / 1e9).toFixed(2)} GB in ${writeS.toFixed(1)} s`);
  const rssBefore = process.memoryUsage().rss;
  t0 = performance.now();
  const { model } = await loadQwen2VL(dir, { loadProcessor: false, weightResidency: "host" });
  const loadS = (performance.now() - t0) / 1000;
  console.error(`loaded in ${loadS.toFixed(1)} s`);
  // one 448x448 image: 32x32 patches -> 1024 patch rows, 256 image tokens; 24 text tokens around it
  const grid = [[1, 32, 32]];
  const ids: number[] = [];
  for (let i = 0; i < 12; i++) ids.push(1000 + i);
  ids.push(cfg.visionStartTokenId);
  for (let i = 0; i < 256; i++) ids.push(cfg.imageTokenId);
  ids.push(cfg.visionEndTokenId);
  for (let i = 0; i < 10; i++) ids.push(2000 + i);
  const S = ids.length;
  const inputIds = tf.tensor2d([ids], [1, S], "int32");
  const pv = tf.randomNormal([1024, 1176], 0, 1, "float32", 1) as tf.Tensor2D;
  t0 = performance.now();
  const feats = model.getImageFeatures(pv, grid);
  feats.dataSync();
  const visionS = (performance.now() - t0) / 1000;
  console.error(`vision ${visionS.toFixed(1)} s`);
  t0 = performance.now();
  const out = model.forward({ inputIds, imageEmbeds: feats, imageGridThw: grid, logitsToKeep: 1 });
  const logits = out.logits.dataSync();
  const textS = (performance.now() - t0) / 1000;
  const finite = logits.every((x) => Number.isFinite(x));
  const peakRss = process.resourceUsage().maxRSS * 1024;
  tf.dispose([out.logits, feats, inputIds, pv]);
  model.dispose();
  const md = [
    "## Qwen2-VL-2B-Instruct size (issue 3, `npm run bench:2b`)",
    "",
    `- date: ${new Date().toISOString()}; backend: ${backend}; machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? "?"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; load average at the end ${os.loadavg().map((x) => x.toFixed(1)).join(" / ")} (1/5/15 min; other jobs share the 2 cores)`,
    `- checkpoint: random weights, Qwen2-VL-2B-Instruct's exact config.json, BF16, ${(bytes / 1e9).toFixed(2)} GB in a temp folder (written in ${writeS.toFixed(0)} s, deleted after the run)`,
    `- loading: weightResidency "host" (Linear/embedding/lm_head weights as host Float32Arrays, uploaded per layer during the forward; norms and biases on the device)`,
    `- input: ${S}-token prompt (${S - 256} text + 256 image tokens) with one 448x448 image (1024 patches), logitsToKeep 1`,
    "",
    "| measure | value |",
    "| --- | --- |",
    `| load time (read + BF16->F32, 8.8 GB float32) | ${loadS.toFixed(1)} s |`,
    `| vision tower (1024 patches) | ${visionS.toFixed(1)} s |`,
    `| language model prefill (${S} tokens, image features precomputed) | ${textS.toFixed(1)} s |`,
    `| forward total | ${(visionS + textS).toFixed(1)} s |`,
    `| peak RSS (whole process) | ${(peakRss / 2 ** 30).toFixed(2)} GiB (RSS before loading ${(rssBefore / 2 ** 30).toFixed(2)} GiB) |`,
    `| logits finite | ${finite} |`,
    "",
  ].join("\n");
  writeFileAtomic(path.join(here, "RESULTS_2B.md"), md);
  console.log(md);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
