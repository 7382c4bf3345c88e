"""Caption metrics as the COCO caption evaluation (pycocoevalcap) computes them, offline.

BLEU-1..4, ROUGE-L and CIDEr (the COCO "CIDEr", which is CIDEr-D: clipped n-gram counts and a
length penalty, sigma 6) follow pycocoevalcap's scorers line by line, on captions tokenised by
``flowtok.eval.ptb_tokenizer`` (a pure-Python port of its Java PTB tokeniser). METEOR needs the
official ``meteor-1.5.jar`` (with its ``data/`` folder) and Java; it runs only when a jar is given.

Results and references are keyed by image id. Like COCOEvalCap, the images scored are those of the
results; each needs exactly one caption and at least one reference.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flowtok.errors import ConfigError, DataError
from flowtok.eval.ptb_tokenizer import ptb_tokenize

BLEU_N = 4
CIDER_N = 4
CIDER_SIGMA = 6.0  # CIDEr-D's Gaussian length penalty
ROUGE_BETA = 1.2
BLEU_TINY, BLEU_SMALL = 1e-15, 1e-9  # pycocoevalcap's guards against zero counts
ID_KEYS = ("image_id", "image", "file_name", "id")
CAPTION_KEYS = ("caption", "captions", "text")
METEOR_JAVA_MEMORY = "-Xmx2G"

Refs = dict[str, list[str]]  # image id -> reference captions
Hyps = dict[str, str]  # image id -> the one result caption


# ---- reading ------------------------------------------------------------------------------------

@dataclass
class CaptionFile:
    """Captions read from a file: id -> captions (file order), and each id's original JSON value."""

    captions: dict[str, list[str]]
    original_ids: dict[str, object]


def _records_from_json(data: object, path: Path) -> list[dict]:
    if isinstance(data, dict):
        for key in ("annotations", "captions", "results"):
            if isinstance(data.get(key), list):
                return data[key]
        if all(isinstance(v, (str, list)) for v in data.values()):  # {"id": "caption" or [...]}
            return [{"image_id": k, "caption": v} for k, v in data.items()]
    if isinstance(data, list):
        return data
    raise DataError(f"{path}: expected a COCO caption file (a list of {{image_id, caption}} or "
                    "{\"annotations\": [...]})")


def _field(record: dict, keys: Sequence[str], what: str, where: str) -> object:
    for key in keys:
        if key in record:
            return record[key]
    raise DataError(f"{where}: no {what} field (one of {', '.join(keys)})")


def read_captions(path: Path) -> CaptionFile:
    """Read COCO JSON (results list or annotation file), JSONL, or TSV (``id<TAB>caption``).

    JSON/JSONL records name the image with image_id, image, file_name or id, and the text with
    caption (a string), captions (a list) or text. A TSV header line ``image_id<TAB>caption`` is
    skipped; an id may repeat for several references.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such caption file")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    records: list[tuple[object, object, str]] = []  # (id, caption(s), where)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from e
        for i, r in enumerate(_records_from_json(data, path)):
            where = f"{path} record {i}"
            if not isinstance(r, dict):
                raise DataError(f"{where}: expected an object with image_id and caption")
            records.append((_field(r, ID_KEYS, "image id", where),
                            _field(r, CAPTION_KEYS, "caption", where), where))
    elif suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path} line {i}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e})") from e
            if not isinstance(r, dict):
                raise DataError(f"{where}: expected an object with image_id and caption")
            records.append((_field(r, ID_KEYS, "image id", where),
                            _field(r, CAPTION_KEYS, "caption", where), where))
    elif suffix in (".tsv", ".txt"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if i == 1 and line.split("\t")[0].strip().lower() in ID_KEYS:
                continue
            parts = line.split("\t", 1)
            if len(parts) != 2:
                raise DataError(f"{path} line {i}: expected image_id<TAB>caption")
            records.append((parts[0].strip(), parts[1], f"{path} line {i}"))
    else:
        raise ConfigError(f"{path}: unknown caption file type {suffix!r}; use .json, .jsonl or .tsv")
    out = CaptionFile({}, {})
    for image_id, caption, where in records:
        texts = caption if isinstance(caption, list) else [caption]
        if not all(isinstance(t, str) for t in texts):
            raise DataError(f"{where}: captions must be strings")
        key = str(image_id)
        out.captions.setdefault(key, []).extend(texts)
        out.original_ids.setdefault(key, image_id)
    if not out.captions:
        raise DataError(f"{path}: no captions")
    return out


# ---- metrics on tokenised captions --------------------------------------------------------------

def _ngrams(words: Sequence[str], n: int) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def bleu(refs: Refs, hyps: Hyps, n: int = BLEU_N) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..n (pycocoevalcap's BleuScorer, "closest" reference length) and per image.

    Corpus BLEU-k = BP * (prod_{j<=k} clipped_j / total_j)^(1/k), counts summed over images,
    BP = exp(1 - r/c) when the summed candidate length c is below the summed closest reference
    length r. Returns (scores[k-1], per_image[k-1][i]).
    """
    guess, correct = [0] * n, [0] * n
    test_len = ref_len = 0
    per_image: list[list[float]] = [[] for _ in range(n)]
    for image_id, hyp in hyps.items():
        words = hyp.split()
        counts = _ngrams(words, n)
        max_ref: dict[tuple[str, ...], int] = {}
        lengths = []
        for ref in refs[image_id]:
            ref_words = ref.split()
            lengths.append(len(ref_words))
            for gram, c in _ngrams(ref_words, n).items():
                max_ref[gram] = max(max_ref.get(gram, 0), c)
        closest = min((abs(length - len(words)), length) for length in lengths)[1]
        img_guess = [max(0, len(words) - k + 1) for k in range(1, n + 1)]
        img_correct = [0] * n
        for gram, c in counts.items():
            img_correct[len(gram) - 1] += min(max_ref.get(gram, 0), c)
        _append_bleu(per_image, img_correct, img_guess, len(words), closest)
        test_len += len(words)
        ref_len += closest
        for k in range(n):
            guess[k] += img_guess[k]
            correct[k] += img_correct[k]
    corpus: list[list[float]] = [[] for _ in range(n)]
    _append_bleu(corpus, correct, guess, test_len, ref_len)
    return [c[0] for c in corpus], per_image


def _append_bleu(out: list[list[float]], correct: list[int], guess: list[int], test_len: int,
                 ref_len: int) -> None:
    product = 1.0
    for k in range(len(out)):
        product *= (correct[k] + BLEU_TINY) / (guess[k] + BLEU_SMALL)
        out[k].append(product ** (1.0 / (k + 1)))
    ratio = (test_len + BLEU_TINY) / (ref_len + BLEU_SMALL)
    if ratio < 1:
        for k in range(len(out)):
            out[k][-1] *= math.exp(1 - 1 / ratio)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(refs: Refs, hyps: Hyps, beta: float = ROUGE_BETA) -> tuple[float, list[float]]:
    """ROUGE-L: F-measure of the best LCS precision and recall over references, averaged.

    F = (1 + beta^2) P R / (R + beta^2 P) with P = max_r LCS/|cand|, R = max_r LCS/|ref|.
    Tokens are split on single spaces, as pycocoevalcap does.
    """
    scores = []
    for image_id, hyp in hyps.items():
        cand = hyp.split(" ")
        prec, rec = [], []
        for ref in refs[image_id]:
            ref_tokens = ref.split(" ")
            lcs = lcs_length(ref_tokens, cand)
            prec.append(lcs / len(cand))
            rec.append(lcs / len(ref_tokens))
        p, r = max(prec), max(rec)
        scores.append((1 + beta**2) * p * r / (r + beta**2 * p) if p != 0 and r != 0 else 0.0)
    return sum(scores) / len(scores), scores


def cider_d(refs: Refs, hyps: Hyps, n: int = CIDER_N,
            sigma: float = CIDER_SIGMA) -> tuple[float, list[float]]:
    """CIDEr-D (COCO's "CIDEr"): tf-idf n-gram cosine, clipped, length-penalised, times 10.

    Document frequencies come from the references of the scored images themselves, so a corpus
    of one image scores 0. As in pycocoevalcap, the "length" in the penalty counts bigrams.
    """
    ref_counts = {i: [_ngrams(r.split(), n) for r in refs[i]] for i in hyps}
    doc_freq: dict[tuple[str, ...], int] = defaultdict(int)
    for counts in ref_counts.values():
        for gram in {g for c in counts for g in c}:
            doc_freq[gram] += 1
    log_n_docs = math.log(float(len(hyps)))

    def vector(counts):
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            vec[k][gram] = tf * (log_n_docs - math.log(max(1.0, doc_freq.get(gram, 0.0))))
            norm[k] += vec[k][gram] ** 2
            if k == 1:
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    scores = []
    for image_id, hyp in hyps.items():
        vec_h, norm_h, len_h = vector(_ngrams(hyp.split(), n))
        total = [0.0] * n
        for counts in ref_counts[image_id]:
            vec_r, norm_r, len_r = vector(counts)
            penalty = math.exp(-((len_h - len_r) ** 2) / (2 * sigma**2))
            for k in range(n):
                val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0)
                          for g, w in vec_h[k].items())
                if norm_h[k] != 0 and norm_r[k] != 0:
                    val /= norm_h[k] * norm_r[k]
                total[k] += val * penalty
        scores.append(10.0 * (sum(total) / n) / len(ref_counts[image_id]))
    return sum(scores) / len(scores), scores


def meteor(refs: Refs, hyps: Hyps, jar: Path, java: str = "java") -> tuple[float, list[float]]:
    """METEOR 1.5 through the official jar, spoken to as pycocoevalcap does (-l en -norm).

    The jar must sit next to its ``data/`` folder (paraphrase tables); this runs Java.
    """
    jar = Path(jar)
    if not jar.is_file():
        raise ConfigError(f"{jar}: METEOR jar not found; pass the meteor-1.5.jar that ships with "
                          "pycocoevalcap (keep its data/ folder beside it)")
    cmd = [java, "-jar", METEOR_JAVA_MEMORY, str(jar.resolve()), "-", "-", "-stdio", "-l", "en",
           "-norm"]
    try:
        proc = subprocess.Popen(cmd, cwd=jar.resolve().parent, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError as e:
        raise DataError(f"cannot run {java!r} for METEOR ({e}); install Java or omit "
                        "--meteor-jar") from e
    assert proc.stdin is not None and proc.stdout is not None

    def ask(line: str) -> str:
        proc.stdin.write((line + "\n").encode())
        proc.stdin.flush()
        answer = proc.stdout.readline().decode().strip()
        if not answer:
            raise DataError(f"{jar}: METEOR stopped answering (is data/paraphrase-en.gz beside "
                            "the jar?)")
        return answer

    try:
        stats = []
        for image_id, hyp in hyps.items():
            hyp = hyp.replace("|||", "").replace("  ", " ")
            stats.append(ask(" ||| ".join(["SCORE", " ||| ".join(refs[image_id]), hyp])))
        # EVAL answers one line per image, then the corpus score.
        lines = [ask("EVAL ||| " + " ||| ".join(stats))]
        lines += [proc.stdout.readline().decode().strip() for _ in range(len(stats))]
        per_image, corpus = [float(x) for x in lines[:-1]], float(lines[-1])
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()
    return corpus, per_image


# ---- the COCO evaluation ------------------------------------------------------------------------

def pair_captions(results: CaptionFile, references: CaptionFile,
                  by_basename: bool = False) -> tuple[dict[str, str], Refs]:
    """Match each result to its references: one caption per result image, all present in the
    references. With by_basename, ids compare by file name (``a/b/x.png`` matches ``x.png``)."""
    def key(i: str) -> str:
        return Path(i).name if by_basename else i

    refs: Refs = {}
    for image_id, caps in references.captions.items():
        refs.setdefault(key(image_id), []).extend(caps)
    hyps: dict[str, str] = {}
    for image_id, caps in results.captions.items():
        k = key(image_id)
        if len(caps) != 1 or k in hyps:
            raise DataError(f"image {image_id}: several result captions; the COCO evaluation "
                            "takes exactly one per image")
        hyps[k] = caps[0]
    missing = [i for i in hyps if i not in refs]
    if missing:
        hint = "" if by_basename else " (ids that are paths? try --by-basename)"
        raise DataError(f"{len(missing)} result image(s) have no reference, e.g. {missing[0]!r}"
                        f"{hint}")
    return hyps, {i: refs[i] for i in hyps}


def evaluate_captions(results: CaptionFile, references: CaptionFile,
                      meteor_jar: Path | None = None, by_basename: bool = False,
                      java: str = "java") -> dict:
    """Score results against references; returns the COCO caption evaluation's JSON layout.

    ``{"eval": {"Bleu_1".."Bleu_4", "METEOR"?, "ROUGE_L", "CIDEr"}, "evalImgs": [{"image_id",
    metric: score, ...}], "n_images": int, "meteor": "how it was computed or why not"}``.
    """
    hyps_raw, refs_raw = pair_captions(results, references, by_basename)
    ids = list(hyps_raw)
    ref_lists = [refs_raw[i] for i in ids]
    flat_refs = ptb_tokenize([c for caps in ref_lists for c in caps])
    refs: Refs = {}
    pos = 0
    for i, caps in zip(ids, ref_lists):
        refs[i] = flat_refs[pos:pos + len(caps)]
        pos += len(caps)
    hyps = dict(zip(ids, ptb_tokenize([hyps_raw[i] for i in ids])))

    scores: dict[str, float] = {}
    per_image: dict[str, list[float]] = {}
    bleu_scores, bleu_images = bleu(refs, hyps)
    for k in range(BLEU_N):
        scores[f"Bleu_{k + 1}"] = bleu_scores[k]
        per_image[f"Bleu_{k + 1}"] = bleu_images[k]
    if meteor_jar is not None:
        scores["METEOR"], per_image["METEOR"] = meteor(refs, hyps, meteor_jar, java)
        meteor_note = f"computed with {meteor_jar}"
    else:
        meteor_note = "not computed: pass --meteor-jar PATH (meteor-1.5.jar with its data/ folder)"
    scores["ROUGE_L"], per_image["ROUGE_L"] = rouge_l(refs, hyps)
    scores["CIDEr"], per_image["CIDEr"] = cider_d(refs, hyps)
    original = {(Path(k).name if by_basename else k): v for k, v in results.original_ids.items()}
    eval_imgs = [{"image_id": original.get(i, i), **{m: v[n] for m, v in per_image.items()}}
                 for n, i in enumerate(ids)]
    return {"eval": scores, "evalImgs": eval_imgs, "n_images": len(ids),
            "n_reference_images": len(references.captions), "meteor": meteor_note,
            "tokenizer": "PTB (pure-Python port of pycocoevalcap's CoreNLP 3.4.1 tokeniser)"}
