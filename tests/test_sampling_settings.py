"""Euler steps and temperature: one check each (flowtok.sampling_settings), worded for the Python
caller or the CLI option; the pipeline takes the temperature as an argument, never as a change
to its config."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from flowtok.errors import ArgumentError
from flowtok.pipeline import FlowTokPipeline
from flowtok.sampling_settings import check_steps, check_temperature
from flowtok_cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, "3"])
def test_steps_below_1_or_not_an_integer_are_refused_by_name(steps):
    with pytest.raises(ArgumentError, match="num_inference_steps must be an integer of at least 1"):
        check_steps(steps)


def test_steps_above_a_bound_are_refused_and_the_cli_option_is_named():
    assert check_steps(1000, most=1000) == 1000
    assert check_steps(5000) == 5000  # no bound for Python callers
    with pytest.raises(ArgumentError, match=r"^--steps 1001: at most 1000; images stop changing"):
        check_steps(1001, most=1000, option="--steps")
    with pytest.raises(ArgumentError, match=r"^--steps 0: the number of Euler steps must be at "):
        check_steps(0, most=1000, option="--steps")


@pytest.mark.parametrize("t", [-0.1, math.nan, math.inf, True, "1"])
def test_temperature_must_be_finite_and_not_negative(t):
    with pytest.raises(ArgumentError, match="temperature must be a finite number of at least 0"):
        check_temperature(t)
    with pytest.raises(ArgumentError, match=r"^--temperature .*: must be a finite number, 0 or"):
        check_temperature(t, option="--temperature")


def test_temperature_is_a_float():
    assert check_temperature(0) == 0.0 and isinstance(check_temperature(2), float)


def test_pipeline_temperature_argument_matches_the_config_setting_and_leaves_it(model_dir):
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    before = pipe.config.flow.temperature
    cold = pipe("a cat", num_inference_steps=2, seed=3, num_images_per_prompt=2, temperature=0.0)
    assert pipe.config.flow.temperature == before  # an argument, not a change to the model
    assert np.array_equal(np.asarray(cold[0]), np.asarray(cold[1]))  # 0: the mean, every seed
    pipe.config.flow.temperature = 0.0
    via_config = pipe("a cat", num_inference_steps=2, seed=3, num_images_per_prompt=2)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(cold, via_config))


def test_pipeline_refuses_a_bad_temperature_before_any_work(model_dir):
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    with pytest.raises(ArgumentError, match="temperature must be a finite number"):
        next(pipe.iter_images([("a cat", 0)], 2, temperature=-1.0))


def test_generate_temperature_is_recorded_without_changing_the_model_folder(model_dir, tmp_path):
    res = runner.invoke(app, ["generate", "--model", str(model_dir), "-o", str(tmp_path / "out"),
                              "--steps", "2", "--device", "cpu", "a cat", "--temperature", "0.25"])
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "out/metadata.jsonl").read_text().splitlines()[0])
    assert row["temperature"] == 0.25
    used = json.loads((tmp_path / "out/config.json").read_text())
    assert used["flow"]["temperature"] == 0.25  # the config the images were drawn with
    model = json.loads((model_dir / "config.json").read_text())
    assert model["flow"]["temperature"] != 0.25
