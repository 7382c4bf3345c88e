"""`flowtok data shapes` and `flowtok eval shapes` through the CLI: outputs and exit codes 0 / 1 / 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flowtok_cli.app import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "d"
    result = _run("data", "shapes", "-o", out, "--n", 80, "--size", 32, "--seed", 0, "--val", 20, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_data_shapes_writes_train_and_val_folders_and_reports_json(dataset):
    out, info = dataset
    assert info["splits"] == {"train": 60, "val": 20} and info["val_fraction"] == 0.25
    for split, count in (("train", 60), ("val", 20)):
        lines = (out / split / "metadata.jsonl").read_text().splitlines()
        assert len(lines) == count == len(list((out / split).glob("*.png")))
    assert json.loads((out / "dataset.json").read_text())["seed"] == 0


def test_data_shapes_is_deterministic_for_a_seed(tmp_path):
    for name in ("a", "b"):
        assert _run("data", "shapes", "-o", tmp_path / name, "--n", 12, "--size", 64, "--seed", 5).exit_code == 0
    for name in ["metadata.jsonl"] + [f"{i:05d}.png" for i in range(12)]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    result = _run("data", "shapes", "-o", tmp_path / "c", "--n", 12, "--size", 64, "--seed", 6)
    assert "shapes data set written" in result.stdout
    assert (tmp_path / "c" / "metadata.jsonl").read_text() != (tmp_path / "a" / "metadata.jsonl").read_text()


def test_data_shapes_val_as_a_fraction(tmp_path):
    result = _run("data", "shapes", "-o", tmp_path / "d", "--n", 20, "--val", 0.1, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["splits"] == {"train": 18, "val": 2}


@pytest.mark.parametrize("args", [
    ["--n", "0"], ["--size", "7"], ["--size", "16"], ["--val", "2.5"], ["--val", "20"],
    ["--val", "-1"], ["--two-object-prob", "1.5"], ["--seed", "-3"],
])
def test_data_shapes_invalid_values_exit_2_and_write_nothing(tmp_path, args):
    result = _run("data", "shapes", "-o", tmp_path / "d", "--n", 20, *args)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "d").exists()


def test_data_shapes_refuses_a_foreign_folder_with_exit_1(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = _run("data", "shapes", "-o", tmp_path, "--n", 5)
    assert result.exit_code == 1 and "not empty" in result.stderr


def test_eval_shapes_scores_ground_truth_one_hundred_percent(dataset):
    out, _ = dataset
    result = _run("eval", "shapes", out / "train")
    assert result.exit_code == 0, result.output
    for row in ("color", "shape", "size", "position", "count", "all_correct"):
        assert any(line.split()[:2] == [row, "100.00%"] for line in result.stdout.splitlines()), row
    data = json.loads(_run("eval", "shapes", out / "val", "--json").stdout)
    assert data["n"] == 20 and data["all_correct"] == 1.0 and data["failures"] == []


def test_eval_shapes_with_shuffled_prompts_scores_low_and_lists_failures(dataset, tmp_path):
    out, _ = dataset
    lines = [json.loads(x) for x in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    texts = [x["text"] for x in lines]
    shuffled = [{"file_name": str(out / "train" / x["file_name"]), "text": t}
                for x, t in zip(lines, texts[7:] + texts[:7])]
    shuffled.append({"file_name": str(out / "train" / lines[0]["file_name"]), "text": "a cat"})
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(x) for x in shuffled) + "\n")
    data = json.loads(_run("eval", "shapes", tmp_path, "--json").stdout)
    assert data["n"] == 61 and data["all_correct"] < 0.10 and data["unparseable"] == 1
    table = _run("eval", "shapes", tmp_path, "--failures", 2).stdout
    assert "unparseable  1" in table and table.count("wrong:") == 2


def test_eval_shapes_runtime_errors_exit_1(tmp_path):
    result = _run("eval", "shapes", tmp_path)
    assert result.exit_code == 1 and "no metadata.jsonl" in result.stderr
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "gone.png", "text": "a cat"}\n')
    result = _run("eval", "shapes", tmp_path)
    assert result.exit_code == 1 and "gone.png" in result.stderr and "not found" in result.stderr
    assert _run("eval", "shapes", tmp_path / "missing").exit_code == 1


def test_eval_shapes_on_a_split_root_says_which_folder_to_pass(dataset):
    out, _ = dataset
    result = _run("eval", "shapes", out)
    assert result.exit_code == 1 and "train/ or val/" in result.stderr


def test_eval_shapes_usage_error_exits_2(dataset):
    out, _ = dataset
    assert _run("eval", "shapes", out / "val", "--failures", "-1").exit_code == 2
    assert _run("eval", "shapes").exit_code == 2


def test_data_prompts_writes_the_canonical_list(tmp_path):
    from flowtok.data.shapes import canonical_prompts
    from flowtok.eval.shapes_eval import parse_caption

    out = tmp_path / "sub" / "prompts.txt"
    r = runner.invoke(app, ["data", "prompts", "-o", str(out), "--n", "40", "--seed", "3"])
    assert r.exit_code == 0, r.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == canonical_prompts(40, seed=3)
    assert len(set(lines)) == 40 and all(parse_caption(p) is not None for p in lines)
    r = runner.invoke(app, ["data", "prompts", "-o", str(tmp_path), "--n", "4"])
    assert r.exit_code == 2 and "is a folder" in r.output
