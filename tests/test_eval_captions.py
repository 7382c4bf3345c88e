"""Caption metrics: COCO tokenisation against the real jar's output, BLEU / ROUGE-L / CIDEr-D on
hand-checked examples, corpus aggregation, file formats and `flowtok eval captions`."""

from __future__ import annotations

import json
import math
import stat
import sys

import pytest
from typer.testing import CliRunner

from flowtok.errors import DataError
from flowtok.eval.captions import (
    CaptionFile,
    bleu,
    cider_d,
    evaluate_captions,
    lcs_length,
    meteor,
    read_captions,
    rouge_l,
)
from flowtok.eval.ptb_tokenizer import ptb_tokenize
from flowtok_cli.app import app

runner = CliRunner()

# Inputs and what pycocoevalcap's PTBTokenizer returns for them (stanford-corenlp-3.4.1.jar
# -preserveLines -lowerCase on these lines in this order, then its punctuation filter).
PTB_CASES = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("Two dogs don't like the man's hat, and they're happy!",
     "two dogs do n't like the man 's hat and they 're happy"),
    ('A man (wearing a hat) holds a "big" sign [with words].',
     "a man -lrb- wearing a hat -rrb- holds a big sign -lsb- with words -rsb-"),
    ("The U.S. flag flies over a building... near 3:30 pm.",
     "the u.s. flag flies over a building near 3:30 pm"),
    ("It costs $3.50 or £2 & more; e.g. a/b and c*d.",
     "it costs $ 3.50 or # 2 & more e.g. a/b and c * d"),
    ("A black-and-white photo of a 1,000-year-old tree -- really.",
     "a black-and-white photo of a 1,000-year-old tree really"),
    ("Mr. Smith's dog can't, cannot, won't.", "mr. smith 's dog ca n't can not wo n't"),
    ("We're gonna eat 3 1/2 pizzas, ½ each.", "we 're gon na eat 3\xa01/2 pizzas 1/2 each"),
    ("A grey cat on a colourful sofa in the centre.", "a grey cat on a colourful sofa in the centre"),
    ("'Tis a 'quoted' word, rock 'n' roll at 5pm or 10.30am.",
     "'t is a quoted word rock 'n' roll at 5pm or 10.30 am"),
    ("STUFFED WAFFLE WITH BUTTER AND SYRUP AND A TOOTHPICK IN THE MIDDLE",
     "stuffed waffle with butter and syrup and a toothpick in the middle"),
    ("A sign says no. 5 and no. Then etc. and more etc.",
     "a sign says no. 5 and no then etc. and more etc."),
    ("Wow!!! What?? hello:world e--f www.example.com x@y.com",
     "wow !!! what ?? hello world e f www.example.com x@y.com"),
    ("A dog with a ball in it's mouth , a cat... ", "a dog with a ball in it 's mouth a cat"),
    ("café naïve — em dash – en dash … the end.", "café naïve em dash en dash the end"),
    ("The dog is a d.", "the dog is a d."),
    ("I.", "i."),
]


def test_tokenizer_matches_the_reference_jar():
    inputs, expected = zip(*PTB_CASES)
    assert ptb_tokenize(list(inputs)) == list(expected)


def test_single_letter_abbreviation_splits_before_a_sentence_start():
    # Next line "The ..." (capitalised word + space) ends the sentence: "d." becomes "d" ".".
    assert ptb_tokenize(["The dog is a d.", "The cat sat."]) == ["the dog is a d", "the cat sat"]


def test_bleu4_of_identical_sentences_is_one():
    scores, _ = bleu({"1": ["a man rides a red bike"]}, {"1": "a man rides a red bike"})
    assert scores == pytest.approx([1.0] * 4, abs=1e-9)


def test_bleu_worked_example_with_brevity_penalty():
    hyp = "the cat sat on the mat"  # c = 6 words
    refs = ["the cat sat on the red mat",  # 7 words: the closest reference length r = 7
            "there is a cat sitting on the mat"]  # 8 words
    # Clipped matches / candidate n-grams (max count over references):
    #   1-grams the×2 cat sat on mat: 6/6; 2-grams the-cat cat-sat sat-on on-the the-mat: 5/5;
    #   3-grams the-cat-sat cat-sat-on sat-on-the on-the-mat: 4/4;
    #   4-grams the-cat-sat-on, cat-sat-on-the match, sat-on-the-mat does not: 2/3.
    bp = math.exp(1 - 7 / 6)
    expected = [bp, bp, bp, bp * (2 / 3) ** 0.25]
    scores, per_image = bleu({"x": refs}, {"x": hyp})
    assert scores == pytest.approx(expected, rel=1e-9)
    assert [p[0] for p in per_image] == pytest.approx(expected, rel=1e-9)


def test_corpus_bleu_sums_counts_over_images_instead_of_averaging():
    refs = {"1": ["a b"], "2": ["w x y z"]}
    hyps = {"1": "a b", "2": "c d e f"}
    scores, per_image = bleu(refs, hyps)
    # 2 of 6 candidate unigrams match; c = r = 6 so no brevity penalty.
    assert scores[0] == pytest.approx(2 / 6, rel=1e-9)
    assert sum(p for p in per_image[0]) / 2 == pytest.approx(0.5, abs=1e-6)


def test_lcs_and_rouge_l_by_hand():
    assert lcs_length(["a", "b", "c", "d", "e"], ["a", "c", "e", "f"]) == 3  # a c e
    p, r, beta = 3 / 4, 3 / 5, 1.2  # LCS / |candidate|, LCS / |reference|
    expected = (1 + beta**2) * p * r / (r + beta**2 * p)
    score, per_image = rouge_l({"1": ["a b c d e", "z"]}, {"1": "a c e f"})
    assert score == pytest.approx(expected, rel=1e-12)
    assert per_image == [score]


def test_cider_identical_candidate_scores_ten_and_disjoint_zero():
    refs = {"bus": ["a red bus on the street"] * 3, "dog": ["two dogs play in grass"] * 3}
    same, per_image = cider_d(refs, {"bus": "a red bus on the street", "dog": "zebra zebra"})
    assert per_image == pytest.approx([10.0, 0.0], abs=1e-12)
    assert same == pytest.approx(5.0, abs=1e-12)


def test_cider_of_a_single_image_corpus_is_zero():
    # idf = log(1 / df) = 0 for every n-gram when the corpus holds one image.
    score, _ = cider_d({"1": ["a cat"]}, {"1": "a cat"})
    assert score == 0.0


def _write_formats(tmp_path):
    refs = [("1", "A man riding a horse."), ("1", "A person on a horse."),
            ("2", "Two dogs playing in the grass."), ("2", "Dogs run on a lawn.")]
    preds = [("1", "A man rides a horse."), ("2", "Two dogs on the grass.")]
    (tmp_path / "gt.tsv").write_text("image_id\tcaption\n" + "".join(
        f"{i}\t{c}\n" for i, c in refs))
    (tmp_path / "pred.tsv").write_text("".join(f"{i}\t{c}\n" for i, c in preds))
    (tmp_path / "gt.json").write_text(json.dumps(
        {"annotations": [{"image_id": int(i), "caption": c} for i, c in refs]}))
    (tmp_path / "pred.json").write_text(json.dumps(
        [{"image_id": int(i), "caption": c} for i, c in preds]))
    (tmp_path / "gt.jsonl").write_text("".join(
        json.dumps({"file_name": f"{i}", "captions": [c for j, c in refs if j == i]}) + "\n"
        for i in ("1", "2")))
    (tmp_path / "pred.jsonl").write_text("".join(
        json.dumps({"image": f"out/{i}", "caption": c}) + "\n" for i, c in preds))


def test_tsv_json_and_jsonl_inputs_give_the_same_scores(tmp_path):
    _write_formats(tmp_path)
    tsv = evaluate_captions(read_captions(tmp_path / "pred.tsv"), read_captions(tmp_path / "gt.tsv"))
    js = evaluate_captions(read_captions(tmp_path / "pred.json"), read_captions(tmp_path / "gt.json"))
    jl = evaluate_captions(read_captions(tmp_path / "pred.jsonl"),
                           read_captions(tmp_path / "gt.jsonl"), by_basename=True)
    assert tsv["eval"] == js["eval"] == jl["eval"]
    assert [e["image_id"] for e in js["evalImgs"]] == [1, 2]  # ids keep their JSON type
    assert set(tsv["eval"]) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}


def test_results_must_have_one_caption_and_a_reference():
    refs = CaptionFile({"1": ["a cat"]}, {"1": 1})
    with pytest.raises(DataError, match="exactly one"):
        evaluate_captions(CaptionFile({"1": ["a", "b"]}, {"1": 1}), refs)
    with pytest.raises(DataError, match="no reference"):
        evaluate_captions(CaptionFile({"9": ["a"]}, {"9": 9}), refs)


def test_meteor_speaks_the_jar_protocol(tmp_path):
    # A stand-in for `java -jar meteor-1.5.jar - - -stdio`: answers SCORE with stats, EVAL with
    # one score per image then the corpus score, as the real jar does.
    fake = tmp_path / "java"
    fake.write_text(f"#!{sys.executable}\n" + """import sys
stats = []
for line in sys.stdin:
    parts = line.rstrip("\\n").split(" ||| ")
    if parts[0] == "SCORE":
        print(f"{len(parts) - 2} {len(parts[-1].split())}", flush=True)
    else:
        scores = [int(s.split()[1]) / 10 for s in parts[1:]]
        print("\\n".join(map(str, scores)) + f"\\n{sum(scores)}", flush=True)
""")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    jar = tmp_path / "meteor-1.5.jar"
    jar.write_bytes(b"")
    score, per_image = meteor({"a": ["x y", "z"], "b": ["q"]}, {"a": "one two three", "b": "w"},
                              jar, java=str(fake))
    assert per_image == [0.3, 0.1]
    assert score == pytest.approx(0.4)


def test_cli_prints_coco_eval_json(tmp_path):
    _write_formats(tmp_path)
    out = runner.invoke(app, ["eval", "captions", str(tmp_path / "pred.json"),
                              str(tmp_path / "gt.json"), "--json",
                              "--per-image", str(tmp_path / "per.json")])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["n_images"] == 2 and "not computed" in data["meteor"]
    assert 0 < data["eval"]["Bleu_1"] < 1 and data["eval"]["CIDEr"] >= 0
    per = json.loads((tmp_path / "per.json").read_text())
    assert [p["image_id"] for p in per] == [1, 2] and "CIDEr" in per[0]


def test_cli_errors_have_exit_codes(tmp_path):
    _write_formats(tmp_path)
    (tmp_path / "pred.csv").write_text("1,a cat\n")
    bad_type = runner.invoke(app, ["eval", "captions", str(tmp_path / "pred.csv"),
                                   str(tmp_path / "gt.json")])
    assert bad_type.exit_code == 2 and "unknown caption file type" in bad_type.output
    swapped = runner.invoke(app, ["eval", "captions", str(tmp_path / "gt.json"),
                                  str(tmp_path / "pred.json")])
    assert swapped.exit_code == 1 and "exactly one" in swapped.output


def test_eval_captions_shapes_scores_attributes_not_wording(tmp_path):
    from flowtok_cli.app import app

    gt = tmp_path / "metadata.jsonl"
    pred = tmp_path / "pred.jsonl"
    truth = ["a small red circle in the top left", "a blue square on the left and a red cross on the right",
             "a large green triangle at the bottom"]
    said = ["a small red circle at the top left",  # "at" / "in" are alike
            "a red cross on the right and a blue square on the left",  # object order is free
            "a large green square at the bottom"]  # wrong shape
    gt.write_text("".join(json.dumps({"file_name": f"{i}.png", "text": t}) + "\n" for i, t in enumerate(truth)))
    pred.write_text("".join(json.dumps({"image": f"x/{i}.png", "caption": c}) + "\n" for i, c in enumerate(said)))
    r = CliRunner().invoke(app, ["eval", "captions", str(pred), str(gt), "--by-basename", "--shapes", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["shapes_all_correct"] == pytest.approx(2 / 3)
