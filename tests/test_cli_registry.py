"""Every command the CLI lists is registered (none silently dropped), and the preset help
comes from the presets folder (issue 27, item 6)."""

import pytest
from typer.testing import CliRunner

from flowtok.config import preset_names
from flowtok_cli import app as app_module


def test_every_listed_command_and_group_is_registered():
    names = {c.name for c in app_module.app.registered_commands}
    groups = {g.name for g in app_module.app.registered_groups}
    assert set(app_module.COMMANDS) <= names
    assert set(app_module.GROUPS) <= groups


def test_a_command_module_that_is_missing_is_an_error():
    with pytest.raises(ImportError):
        app_module._load("no_such_cmd_module:run")


def test_preset_help_lists_every_shipped_preset():
    assert "varied" in preset_names()
    result = CliRunner().invoke(app_module.app, ["train", "flow", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for name in preset_names():
        assert name in result.output
