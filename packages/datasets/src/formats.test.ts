import fs from "node:fs";
import path from "node:path";
import { asyncBufferFromFile, parquetMetadataAsync } from "hyparquet";
import { describe, expect, it } from "vitest";
import { DatasetError } from "./errors";
import { cvBenchScore } from "./formats/parquet";
import { loadDataset } from "./load";
import { png, tmpDir, writeJson, writeParquet, writePng, writeText } from "./test-helpers";

describe("rarl reasoning set", () => {
  it("reads JSONL with reasoning answer, short answer, image, modality; strips <think>; split from file name", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "images/a.png"));
    await writePng(path.join(d, "images/b.png"));
    writeText(
      path.join(d, "train.jsonl"),
      [
        { id: "s1", image: "images/a.png", question: "Does this image look abnormal?", reasoning_answer: "<think> Yes, irregular lung fields.", short_answer: "Yes.", modality: "X-ray" },
        { image: "images/b.png", question: "What is the modality?", reasoning: "A CT slice.", answer: "CT", modality: "CT", organ: "chest" },
      ]
        .map((x) => JSON.stringify(x))
        .join("\n"),
    );
    const samples = await loadDataset({ format: "rarl", path: path.join(d, "train.jsonl") }).toArray();
    expect(samples).toHaveLength(2);
    expect(samples[0]).toMatchObject({ id: "s1", image: { path: "images/a.png" }, answer: "Yes.", answer_type: "closed", reasoning: "Yes, irregular lung fields.", modality: "X-ray", split: "train", source: "rarl" });
    expect(samples[1]).toMatchObject({ id: "rarl-2", answer: "CT", answer_type: "open", extra: { organ: "chest" } });
  });

  it("reads a JSON array too", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "x.png"));
    writeJson(path.join(d, "test.json"), [{ image: "x.png", question: "q?", reasoning: "r", answer: "No", modality: "MRI" }]);
    const s = await loadDataset({ format: "rarl", path: path.join(d, "test.json") }).toArray();
    expect(s[0]).toMatchObject({ split: "test", answer_type: "closed", modality: "MRI" });
  });
});

describe("silvar-med importer", () => {
  it("imports img_name/question/answer with lists, derives short answers from the explanation", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "images/p1.jpg"));
    await writePng(path.join(d, "images/p2.jpg"));
    writeJson(path.join(d, "silvar.json"), [
      { img_name: "p1.jpg", question: "Does this image look abnormal?", answer: "Yes, the image appears abnormal due to irregular lung fields." },
      {
        img_name: "p2.jpg",
        question: ["Is the lung healthy?", "What disease is shown on the right of lung?"],
        answer: ["No. The lung shows lesions.", "Pneumonia. Increased opacity in the right lung."],
        modality: "X-ray",
      },
    ]);
    const s = await loadDataset({ format: "silvar-med", path: path.join(d, "silvar.json") }).toArray();
    expect(s.map((x) => [x.question, x.answer, x.answer_type])).toEqual([
      ["Does this image look abnormal?", "Yes", "closed"],
      ["Is the lung healthy?", "No", "closed"],
      ["What disease is shown on the right of lung?", "Pneumonia", "open"],
    ]);
    expect(s[0].image).toEqual({ path: "images/p1.jpg" });
    expect(s[2].reasoning).toBe("Pneumonia. Increased opacity in the right lung.");
    expect(s[2].modality).toBe("X-ray");
    expect(new Set(s.map((x) => x.id)).size).toBe(3);
  });

  it("rejects question/answer lists of different lengths, naming the row", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "p.jpg"));
    writeJson(path.join(d, "s.json"), [{ img_name: "p.jpg", question: ["a?", "b?"], answer: ["x"] }]);
    await expect(loadDataset({ format: "silvar-med", path: path.join(d, "s.json") }).toArray()).rejects.toThrow(/s\.json, row 1: "question" has 2 entries/);
  });
});

describe("VQA-RAD original JSON", () => {
  it("reads the public JSON with its image folder; split from phrase_type", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "VQA_RAD Image Folder/synpic54610.jpg"));
    await writePng(path.join(d, "VQA_RAD Image Folder/synpic29265.jpg"));
    writeJson(path.join(d, "VQA_RAD Dataset Public.json"), [
      {
        qid: 0,
        phrase_type: "freeform",
        qid_linked_id: "03f451ca",
        image_case_url: "https://medpix.nlm.nih.gov/case?id=48e1dd0e",
        image_name: "synpic54610.jpg",
        image_organ: "HEAD",
        evaluation: "not evaluated",
        question: "Are regions of the brain infarcted?",
        question_rephrase: "NULL",
        question_relation: "NULL",
        question_frame: "NULL",
        question_type: "PRES",
        answer: "Yes",
        answer_type: "CLOSED",
      },
      { qid: 1, phrase_type: "test_freeform", image_name: "synpic29265.jpg", image_organ: "CHEST", question: "How many ribs are fractured?", question_type: "COUNT", answer: 2, answer_type: "OPEN" },
    ]);
    const ds = loadDataset({ format: "vqa-rad", path: d });
    const s = await ds.toArray();
    expect(s[0]).toMatchObject({ id: "vqa-rad-0", image: { path: "VQA_RAD Image Folder/synpic54610.jpg" }, answer: "Yes", answer_type: "closed", split: "train", extra: { image_organ: "HEAD", question_type: "PRES" } });
    expect(s[1]).toMatchObject({ id: "vqa-rad-1", answer: "2", answer_type: "open", split: "test" });
  });

  it("duplicated qid is an error naming file and row", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "images/a.jpg"));
    const rec = { qid: 7, image_name: "a.jpg", question: "q?", answer: "no", answer_type: "CLOSED", phrase_type: "para" };
    writeJson(path.join(d, "VQA_RAD Dataset Public.json"), [rec, rec]);
    const err = await loadDataset({ format: "vqa-rad", path: d }).toArray().catch((e) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect(err.code).toBe("DATASET_DUPLICATE_ID");
    expect(err.message).toMatch(/VQA_RAD Dataset Public\.json, row 2: duplicated id "vqa-rad-7"/);
  });
});

describe("HF parquet: VQA-RAD and PathVQA", () => {
  it("reads embedded image bytes from a struct<bytes,path> column (snappy), infers answer_type", async () => {
    const d = tmpDir();
    const img = await png(200);
    writeParquet(path.join(d, "data/train-00000-of-00001.parquet"), [
      { name: "image", kind: "IMAGE", data: [{ bytes: img, path: "synpic1.jpg" }, { bytes: img, path: null }] },
      { name: "question", kind: "STRING", data: ["is there a fracture?", "where is the lesion?"] },
      { name: "answer", kind: "STRING", data: ["no", "left lung"] },
    ]);
    const s = await loadDataset({ format: "vqa-rad-parquet", path: d }).toArray();
    expect(s).toHaveLength(2);
    expect("bytes" in s[0].image && Buffer.from(s[0].image.bytes).equals(img)).toBe(true);
    expect(s.map((x) => [x.answer_type, x.split, x.source])).toEqual([
      ["closed", "train", "vqa-rad"],
      ["open", "train", "vqa-rad"],
    ]);
  });

  it("pathvqa: zstd-coded parquet across several row groups streams every row", async () => {
    const d = tmpDir();
    const img = await png(90);
    const n = 7;
    writeParquet(
      path.join(d, "test-00000-of-00001.parquet"),
      [
        { name: "image", kind: "IMAGE", data: Array.from({ length: n }, () => ({ bytes: img, path: null })) },
        { name: "question", kind: "STRING", data: Array.from({ length: n }, (_, i) => `q${i}?`) },
        { name: "answer", kind: "STRING", data: Array.from({ length: n }, (_, i) => (i % 2 ? "yes" : "epithelium")) },
      ],
      "ZSTD",
      3,
    );
    const md = await parquetMetadataAsync(await asyncBufferFromFile(path.join(d, "test-00000-of-00001.parquet")));
    expect(md.row_groups).toHaveLength(3);
    expect(md.row_groups[0].columns.map((c) => c.meta_data?.codec)).toEqual(["ZSTD", "ZSTD", "ZSTD", "ZSTD"]);
    const s = await loadDataset({ format: "pathvqa", path: path.join(d, "test-00000-of-00001.parquet") }).toArray();
    expect(s.map((x) => x.question)).toEqual(Array.from({ length: n }, (_, i) => `q${i}?`));
    expect(s.filter((x) => x.answer_type === "closed")).toHaveLength(3);
    expect(s[6]).toMatchObject({ id: "pathvqa-test-00000-of-00001-7", split: "test", source: "pathvqa" });
  });

  it("an unreadable embedded image is a typed error naming the parquet file and row", async () => {
    const d = tmpDir();
    writeParquet(path.join(d, "train.parquet"), [
      { name: "image", kind: "IMAGE", data: [{ bytes: await png(), path: null }, { bytes: new Uint8Array([1, 2, 3, 4]), path: null }] },
      { name: "question", kind: "STRING", data: ["a?", "b?"] },
      { name: "answer", kind: "STRING", data: ["yes", "no"] },
    ]);
    const err = await loadDataset({ format: "pathvqa", path: path.join(d, "train.parquet") }).toArray().catch((e) => e);
    expect(err.code).toBe("DATASET_UNREADABLE_IMAGE");
    expect(err.message).toMatch(/train\.parquet, row 2: unreadable image/);
    const ds = loadDataset({ format: "pathvqa", path: path.join(d, "train.parquet"), onError: "skip" });
    expect(await ds.toArray()).toHaveLength(1);
    expect(ds.skipped).toEqual([expect.objectContaining({ row: 2, code: "DATASET_UNREADABLE_IMAGE" })]);
  });
});

describe("SLAKE", () => {
  it("reads train/validation/test.json with imgs/, English only by default", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "imgs/xmlab1/source.jpg"));
    const rec = (qid: number, lang: string, extra: object = {}) => ({
      img_id: 1,
      img_name: "xmlab1/source.jpg",
      question: lang === "en" ? "Which part of the body does this image belong to?" : "这张图片属于身体的哪个部位?",
      answer: lang === "en" ? "Abdomen" : "腹部",
      q_lang: lang,
      location: "Abdomen",
      modality: "MRI",
      answer_type: "OPEN",
      base_type: "vqa",
      content_type: "Position",
      triple: ["vhead", "_", "_"],
      qid,
      ...extra,
    });
    writeJson(path.join(d, "train.json"), [rec(1, "en"), rec(2, "zh"), rec(3, "en", { question: "Is this an MRI?", answer: "Yes", answer_type: "CLOSED" })]);
    writeJson(path.join(d, "validation.json"), [rec(4, "en")]);
    writeJson(path.join(d, "test.json"), [rec(5, "zh"), rec(6, "en")]);
    const ds = loadDataset({ format: "slake", path: d });
    const s = await ds.toArray();
    expect(s.map((x) => [x.id, x.split, x.answer_type])).toEqual([
      ["slake-train-1", "train", "open"],
      ["slake-train-3", "train", "closed"],
      ["slake-validation-4", "validation", "open"],
      ["slake-test-6", "test", "open"],
    ]);
    expect(ds.filtered).toBe(2);
    expect(s[0]).toMatchObject({ image: { path: "imgs/xmlab1/source.jpg" }, modality: "MRI", extra: { location: "Abdomen", content_type: "Position" } });
    const all = await loadDataset({ format: "slake", path: d, languages: "all" }).toArray();
    expect(all).toHaveLength(6);
    // the Slake1.0 release names its validation file validate.json
    fs.renameSync(path.join(d, "validation.json"), path.join(d, "validate.json"));
    const again = await loadDataset({ format: "slake", path: d }).toArray();
    expect(again.map((x) => x.split)).toEqual(["train", "train", "validation", "test"]);
  });
});

describe("VQA-Med 2019", () => {
  it("reads synpicID|category|question|answer, synpicID|question|answer and ImageID|Question; '#' alternatives", async () => {
    const d = tmpDir();
    for (const id of ["synpic41148", "synpic54082", "synpic100"]) {
      await writePng(path.join(d, "Train_images", `${id}.jpg`));
      await writePng(path.join(d, "VQAMed2019_Test_Images", `${id}.jpg`));
    }
    writeText(path.join(d, "All_QA_Pairs_train.txt"), "synpic41148|which plane is the image shown in?|axial\nsynpic100|is this a t1 weighted image?|yes\n");
    writeText(
      path.join(d, "VQAMed2019_Test_Questions_w_Ref_Answers.txt"),
      "synpic54082|modality|what kind of image is this?|mr - flair\nsynpic100|abnormality|what is abnormal?|meningioma#meningiomas\n",
    );
    writeText(path.join(d, "VQAMed2019_Test_Questions.txt"), "synpic54082|what kind of image is this?\n");
    const s = await loadDataset({ format: "vqa-med-2019", path: d }).toArray();
    expect(s.map((x) => [x.split, x.image, x.answer, x.answer_type])).toEqual([
      ["train", { path: "Train_images/synpic41148.jpg" }, "axial", "open"],
      ["train", { path: "Train_images/synpic100.jpg" }, "yes", "closed"],
      ["test", { path: "VQAMed2019_Test_Images/synpic54082.jpg" }, "mr - flair", "open"],
      ["test", { path: "VQAMed2019_Test_Images/synpic100.jpg" }, "meningioma", "open"],
    ]);
    expect(s[3].extra).toMatchObject({ category: "abnormality", alternatives: ["meningioma", "meningiomas"] });
    const q = await loadDataset({ format: "vqa-med-2019", path: path.join(d, "VQAMed2019_Test_Questions.txt") }).toArray();
    expect(q[0]).toMatchObject({ answer: "", split: "test", extra: { unanswered: true, image_id: "synpic54082" } });
  });
});

describe("CV-Bench", () => {
  const rows = (img: Uint8Array | string) => ({
    idx: [0n, 1n, 2n],
    type: ["2D", "2D", "3D"],
    task: ["Count", "Relation", "Depth"],
    image: [img, img, img],
    question: ["How many pictures are in the image?", "Is the lamp above the table?", "Which is closer to the camera?"],
    choices: [["0", "1", "2"], ["above", "below"], ["chair", "table"]],
    answer: ["(C)", "(A)", "(B)"],
    prompt: ["How many pictures... Select from the following choices.\n(A) 0\n(B) 1\n(C) 2", "p2", "p3"],
    source: ["ADE20K", "COCO", "Omni3D"],
  });

  it("reads parquet with image struct, choices list and (A)-style answers", async () => {
    const d = tmpDir();
    const img = await png(10);
    const r = rows("x");
    writeParquet(path.join(d, "test.parquet"), [
      { name: "idx", kind: "INT64", data: r.idx },
      { name: "type", kind: "STRING", data: r.type },
      { name: "task", kind: "STRING", data: r.task },
      { name: "image", kind: "IMAGE", data: r.idx.map((i) => ({ bytes: img, path: `img/${i}.png` })) },
      { name: "question", kind: "STRING", data: r.question },
      { name: "choices", kind: "STRING_LIST", data: r.choices },
      { name: "answer", kind: "STRING", data: r.answer },
      { name: "prompt", kind: "STRING", data: r.prompt },
      { name: "source", kind: "STRING", data: r.source },
    ]);
    const s = await loadDataset({ format: "cv-bench", path: d }).toArray();
    expect(s.map((x) => [x.id, x.answer, x.answer_type, x.choices, x.extra?.answer_letter, x.extra?.answer_text, x.extra?.source])).toEqual([
      ["cv-bench-0", "(C)", "choice", ["0", "1", "2"], "C", "2", "ADE20K"],
      ["cv-bench-1", "(A)", "choice", ["above", "below"], "A", "above", "COCO"],
      ["cv-bench-2", "(B)", "choice", ["chair", "table"], "B", "table", "Omni3D"],
    ]);
    expect("bytes" in s[0].image).toBe(true);
  });

  it("reads JSONL with image paths; an answer letter beyond the choices is an error", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "img/2D/count/ade20k_10.png"));
    const line = (o: object) => JSON.stringify({ idx: 0, type: "2D", task: "Count", image: "img/2D/count/ade20k_10.png", question: "How many?", choices: ["1", "2"], answer: "(B)", prompt: "p", source: "ADE20K", ...o });
    writeText(path.join(d, "test_2d.jsonl"), `${line({})}\n${line({ idx: 1, answer: "(D)" })}\n`);
    const ds = loadDataset({ format: "cv-bench", path: path.join(d, "test_2d.jsonl"), onError: "skip" });
    const s = await ds.toArray();
    expect(s[0]).toMatchObject({ image: { path: "img/2D/count/ade20k_10.png" }, answer: "(B)" });
    expect(ds.skipped).toEqual([expect.objectContaining({ row: 2, code: "DATASET_BAD_FIELD", reason: expect.stringContaining('"(D)" is not an option letter') })]);
  });
});

describe("generic JSON / JSONL / CSV with a column mapping", () => {
  it("CSV with a mapping (quoted fields, |-separated choices)", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "pics/1.png"));
    writeText(path.join(d, "my.csv"), 'pic,q,a,opts,kind\npics/1.png,"Which side, left or right?",left,left|right,choice\npics/1.png,Is it normal?,yes,,\n');
    const s = await loadDataset({ format: "csv", path: path.join(d, "my.csv"), mapping: { image: "pic", question: "q", answer: "a", choices: "opts", answer_type: "kind" }, source: "mine" }).toArray();
    expect(s[0]).toMatchObject({ id: "mine-2", question: "Which side, left or right?", answer_type: "choice", choices: ["left", "right"], source: "mine" });
    expect(s[1]).toMatchObject({ id: "mine-3", answer_type: "closed" });
  });

  it("JSON array with a mapping and JSONL identity", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "a.png"));
    writeJson(path.join(d, "x.json"), { data: [{ file: "a.png", prompt: "What?", label: "CT", mod: "CT" }] });
    const s = await loadDataset({ format: "json", path: path.join(d, "x.json"), mapping: { image: "file", question: "prompt", answer: "label", modality: "mod" } }).toArray();
    expect(s[0]).toMatchObject({ image: { path: "a.png" }, answer: "CT", modality: "CT", answer_type: "open" });
    writeText(path.join(d, "y.jsonl"), `${JSON.stringify({ id: "k", image: { path: "a.png" }, question: "Q?", answer: "no", answer_type: "closed", source: "s", extra: { z: 1 } })}\n`);
    const t = await loadDataset({ format: "jsonl", path: path.join(d, "y.jsonl") }).toArray();
    expect(t[0]).toEqual({ id: "k", image: { path: "a.png" }, question: "Q?", answer: "no", answer_type: "closed", source: "s", extra: { z: 1 } });
  });
});

describe("bad input: typed errors naming file and row, or skips with reasons", () => {
  it("missing image file, escaping paths, absolute paths, missing fields", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "ok.png"));
    fs.writeFileSync(path.join(d, "broken.png"), "not an image");
    const lines = [
      { image: "ok.png", question: "q1?", answer: "yes" },
      { image: "missing.png", question: "q2?", answer: "yes" },
      { image: "../outside.png", question: "q3?", answer: "yes" },
      { image: "/etc/passwd", question: "q4?", answer: "yes" },
      { image: "ok.png", answer: "yes" },
      { image: "broken.png", question: "q6?", answer: "yes" },
      { image: "sub/../../x.png", question: "q7?", answer: "yes" },
    ];
    const file = path.join(d, "set.jsonl");
    writeText(file, `${lines.map((l) => JSON.stringify(l)).join("\n")}\n{not json\n`);
    const ds = loadDataset({ format: "rarl", path: file, onError: "skip" });
    const s = await ds.toArray();
    expect(s.map((x) => x.question)).toEqual(["q1?"]);
    expect(ds.skipped.map((k) => [k.row, k.code])).toEqual([
      [2, "DATASET_MISSING_IMAGE"],
      [3, "DATASET_PATH_ESCAPE"],
      [4, "DATASET_PATH_ESCAPE"],
      [5, "DATASET_MISSING_FIELD"],
      [6, "DATASET_UNREADABLE_IMAGE"],
      [7, "DATASET_PATH_ESCAPE"],
      [8, "DATASET_BAD_ROW"],
    ]);
    for (const k of ds.skipped) expect(k.reason).toContain(`${file}, row ${k.row}:`);
    expect(ds.skipped[3].reason).toMatch(/missing required field "question"/);
    const err = await loadDataset({ format: "rarl", path: file }).toArray().catch((e) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect(err.message).toBe(`${file}, row 2: image file not found: ${path.join(d, "missing.png")}`);
  });

  it("a missing dataset file or unknown format throws even under skip", async () => {
    await expect(loadDataset({ format: "slake", path: "/nonexistent/slake", onError: "skip" }).toArray()).rejects.toMatchObject({ code: "DATASET_BAD_FILE" });
    expect(() => loadDataset({ format: "nope" as any, path: "." })).toThrow(/unknown dataset format "nope"/);
  });
});

describe("CV-Bench official score", () => {
  it("is ½·((ADE20K + COCO)/2 + Omni3D) over per-source accuracies", () => {
    const r = [
      ...Array.from({ length: 4 }, (_, i) => ({ source: "ADE20K", correct: i < 3 })), // 0.75
      ...Array.from({ length: 5 }, (_, i) => ({ source: "COCO", correct: i < 2 })), // 0.4
      ...Array.from({ length: 2 }, (_, i) => ({ source: "Omni3D", correct: i < 1 })), // 0.5
    ];
    const s = cvBenchScore(r);
    expect(s.ade20k).toBe(0.75);
    expect(s.coco).toBe(0.4);
    expect(s.omni3d).toBe(0.5);
    expect(s.accuracy2d).toBeCloseTo(0.575, 12);
    expect(s.overall).toBeCloseTo(0.5375, 12);
    expect(s.counts).toEqual({ ADE20K: 4, COCO: 5, Omni3D: 2 });
    // not the plain accuracy over all items (6/11)
    expect(s.overall).not.toBeCloseTo(6 / 11, 3);
    expect(() => cvBenchScore(r.filter((x) => x.source !== "Omni3D"))).toThrow(/Omni3D/);
    expect(() => cvBenchScore([{ source: "KITTI", correct: true }])).toThrow(/unknown CV-Bench source/);
  });
});
