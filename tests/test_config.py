"""Presets, YAML files and --set overrides resolve to exactly the config they describe."""

import json

import pytest

from flowtok.config import (
    CONFIG_VERSION,
    FlowTokConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    load_preset,
    preset_names,
    resolve_config,
    save_config,
    to_dict,
)
from flowtok.errors import ConfigError


def test_every_design_preset_ships_and_loads():
    assert {"tiny", "shapes", "emoji64", "B", "XL", "H"} <= set(preset_names())
    for name in preset_names():
        cfg = load_preset(name)
        assert cfg.name == name
        assert cfg.tokenizer.image_size % cfg.tokenizer.patch_size == 0
        assert cfg.flow.width % cfg.flow.heads == 0


def test_paper_presets_have_paper_shapes():
    for name, depth, width in (("B", 12, 768), ("XL", 28, 1152), ("H", 36, 1280)):
        cfg = load_preset(name)
        assert (cfg.K, cfg.C, cfg.tokenizer.image_size) == (77, 16, 256)
        assert (cfg.flow.depth, cfg.flow.width) == (depth, width)
        assert cfg.tokenizer.scale_factor == pytest.approx(1.0143)
    assert load_preset("XL").flow.width // load_preset("XL").flow.heads == 72


def test_overrides_are_parsed_as_yaml_and_type_checked():
    cfg = apply_overrides(load_preset("tiny"), [
        "flow.depth=3", "train_flow.lr=2e-4", "tokenizer.conv_refine=false",
        "train_flow.betas=[0.8, 0.9]", "text.encoder_path=/some/where",
    ])
    assert cfg.flow.depth == 3 and isinstance(cfg.flow.depth, int)
    assert cfg.train_flow.lr == pytest.approx(2e-4)
    assert cfg.tokenizer.conv_refine is False
    assert cfg.train_flow.betas == (0.8, 0.9)
    assert cfg.text.encoder_path == "/some/where"


@pytest.mark.parametrize("bad", [
    "flow.dept=3",            # unknown key
    "flow=3",                 # a section, not a value
    "flow.depth=three",       # wrong type
    "flow.depth=2.5",         # not an integer
    "nonsense",               # no '='
    "train_flow.betas=[1]",   # wrong length
    "flow.depth.x=1",         # path through a value
])
def test_bad_overrides_raise_config_errors_that_name_the_key(bad):
    with pytest.raises(ConfigError) as e:
        apply_overrides(load_preset("tiny"), [bad])
    assert bad.split("=")[0] in str(e.value)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="tiny"):
        load_preset("nope")


def test_yaml_file_is_deep_merged_over_the_preset(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("flow:\n  depth: 9\ntrain_flow:\n  lr: 0.01\n")
    cfg = resolve_config("tiny", f, ["flow.width=128"])
    base = load_preset("tiny")
    assert cfg.flow.depth == 9 and cfg.flow.width == 128 and cfg.train_flow.lr == 0.01
    assert cfg.flow.heads == base.flow.heads and cfg.tokenizer == base.tokenizer


def test_yaml_file_with_unknown_key_is_refused(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("flow:\n  dpeth: 9\n")
    with pytest.raises(ConfigError, match="dpeth"):
        resolve_config("tiny", f)
    with pytest.raises(ConfigError, match="not found"):
        resolve_config("tiny", tmp_path / "missing.yaml")


def test_saved_config_round_trips_exactly(tmp_path):
    cfg = apply_overrides(load_preset("shapes"), ["flow.depth=4"])
    for name in ("config.json", "config.yaml"):
        save_config(cfg, tmp_path / name)
        assert load_config(tmp_path / name) == cfg
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temp files
    assert json.loads((tmp_path / "config.json").read_text())["flow"]["depth"] == 4


def test_config_from_a_newer_version_is_refused():
    data = to_dict(FlowTokConfig())
    data["version"] = CONFIG_VERSION + 1
    with pytest.raises(ConfigError, match="newer flowtok"):
        config_from_dict(data)


def test_config_files_with_old_key_names_still_load(tmp_path):
    """train_*.kl_weight was renamed tokenizer_kl_weight and train_*.num_workers removed; files
    written before (as the shipped default model's i2t config was) load with the old values."""
    from pathlib import Path

    import flowtok

    shipped = Path(flowtok.__file__).parent / "default_model"
    for i, path in enumerate((shipped / "config.json", shipped / "i2t" / "config.json")):
        raw = json.loads(path.read_text())
        for part in ("train_tokenizer", "train_flow"):  # written the old way
            raw[part]["kl_weight"] = raw[part].pop("tokenizer_kl_weight", 1e-6)
            raw[part]["num_workers"] = 0
        path = tmp_path / f"old{i}.json"
        path.write_text(json.dumps(raw))
        cfg = load_config(path)
        assert cfg.train_tokenizer.tokenizer_kl_weight == raw["train_tokenizer"]["kl_weight"]
        assert cfg.text.kl_weight == raw["text"]["kl_weight"]  # the projector's: not renamed
        assert "kl_weight" not in to_dict(cfg.train_flow) and "num_workers" not in to_dict(cfg.train_flow)
    data = to_dict(load_preset("tiny"))
    data["train_tokenizer"]["kl_weight"] = 0.5
    with pytest.raises(ConfigError, match="old name of tokenizer_kl_weight"):
        config_from_dict(data)  # the old and the new name at once
    del data["train_tokenizer"]["tokenizer_kl_weight"]
    assert config_from_dict(data).train_tokenizer.tokenizer_kl_weight == 0.5


def test_old_key_names_work_in_overrides_and_yaml_files(tmp_path):
    cfg = apply_overrides(load_preset("tiny"), ["train_tokenizer.kl_weight=0.25"])
    assert cfg.train_tokenizer.tokenizer_kl_weight == 0.25
    with pytest.raises(ConfigError, match="num_workers was removed"):
        apply_overrides(load_preset("tiny"), ["train_flow.num_workers=2"])
    path = tmp_path / "old.yaml"
    path.write_text("train_tokenizer: {kl_weight: 0.125, num_workers: 4}\n")
    assert resolve_config("tiny", path).train_tokenizer.tokenizer_kl_weight == 0.125
