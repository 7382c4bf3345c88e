"""The `flowtok` command: one typer app assembling one small module per command.

Known errors become one-line messages with exit codes (0 ok, 1 runtime error, 2 usage error);
``--debug`` shows the traceback instead. Torch is imported only inside commands, so ``--help``
is instant.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from flowtok import __version__


class _FlowTokGroup(TyperGroup):
    """Maps library errors to one-line messages and exit codes for every subcommand."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _quiet_flags(self)

    def parse_args(self, ctx, args):
        ctx.meta.setdefault("flowtok.args", list(args))  # the whole command line, for invoke
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        from flowtok_cli.common import echo_error, set_json_errors

        set_json_errors(False)  # per invocation; a subcommand's --json turns it on while parsing
        try:
            return super().invoke(ctx)
        except Exception as e:  # noqa: BLE001 - sorted below: usage, known, or re-raised
            # a bad option or value stops parsing before --json's callback runs: a script that
            # asked for JSON still gets its error as JSON (text mode keeps click's own message)
            if not _is_usage_error(e) or "--json" not in ctx.meta.get("flowtok.args", ()):
                return self._report(ctx, e)
            set_json_errors(True)
            echo_error(e.format_message(), e.exit_code)
            raise typer.Exit(code=e.exit_code) from None

    @staticmethod
    def _report(ctx, e: Exception):
        """A known library error as a one-line message and its exit code; anything else (click's
        own exits and usage errors, bugs) propagates."""
        from flowtok_cli.common import echo_error

        if (ctx.obj or {}).get("debug"):
            raise e
        code, msg = _classify(e)
        if code is None:
            raise e
        echo_error(msg, code)
        raise typer.Exit(code=code) from None


def _is_usage_error(e: Exception) -> bool:
    """A command-line parse error (bad option, bad value, missing argument): typer >= 0.29
    raises its vendored click's UsageError, older typer click's own."""
    if isinstance(e, click.UsageError):
        return True
    return isinstance(e, typer.TyperException) and getattr(e, "exit_code", None) == 2 \
        and hasattr(e, "format_message")


def _quiet_flags(cmd) -> None:
    """On/off flags show no value type in --help (typer would print ``<bool>`` beside them, as
    if ``--grid`` took a value); applied to every command and group below ``cmd``."""
    for param in cmd.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    make_help = cmd.get_help_option

    def get_help_option(ctx):
        option = make_help(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    cmd.get_help_option = get_help_option
    for sub in getattr(cmd, "commands", {}).values():
        _quiet_flags(sub)


def _classify(e: BaseException) -> tuple[int | None, str]:
    from flowtok.errors import ConfigError, FlowTokError

    if isinstance(e, ConfigError):
        return 2, str(e)
    if type(e).__name__ == "BackendUnavailable":  # an explicitly requested kernel backend
        return 2, f"{e}; unset FLOWTOK_KERNELS or choose another backend (see flowtok doctor)"
    if isinstance(e, FlowTokError):
        return 1, str(e)
    if isinstance(e, OSError) and getattr(e, "filename", None):
        return 1, f"{e.filename}: {e.strerror or e}"
    if isinstance(e, OSError) and e.errno is not None:  # e.g. a full disk while writing outputs
        return 1, f"{e.strerror or e} (errno {e.errno})"
    if isinstance(e, MemoryError):
        return 1, "out of memory; try a smaller --batch or preset"
    return None, ""


app = typer.Typer(
    name="flowtok",
    cls=_FlowTokGroup,
    help="FlowTok: text-to-image and image-to-text by flow matching between 1D token latents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flowtok {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool | None,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """FlowTok command-line tools. Run `flowtok COMMAND --help` for examples."""
    ctx.obj = {"debug": debug}


# Commands and groups, as "module:function". A command whose module does not exist yet is not
# registered (register only what really works); modules import no torch at import time.
COMMANDS: dict[str, str] = {
    "doctor": "doctor_cmd:doctor",
    "tokenize": "tokenize_cmd:tokenize",
    "detokenize": "tokenize_cmd:detokenize",
    "generate": "generate_cmd:generate",
    "caption": "caption_cmd:caption",
}
GROUPS: dict[str, tuple[str, dict[str, str]]] = {
    "data": ("Make data sets: procedural shapes, emoji; canonical shapes prompts.", {
        "shapes": "data_shapes_cmd:shapes",
        "emoji": "data_emoji_cmd:emoji",
        "prompts": "data_prompts_cmd:prompts",
    }),
    "train": ("Train the tokenizer, the flow model (t2i / i2t) and the caption decoder.", {
        "tokenizer": "train_tokenizer_cmd:tokenizer",
        "flow": "train_flow_cmd:flow",
    }),
    "eval": ("Score images, reconstructions, generations and captions.", {
        "shapes": "eval_shapes_cmd:shapes",
        "tokenizer": "eval_tokenizer_cmd:tokenizer",
        "fid": "eval_fid_cmd:fid",
        "diversity": "eval_diversity_cmd:diversity",
        "captions": "eval_captions_cmd:captions",
        "emoji": "eval_emoji_cmd:emoji",
        "coco": "eval_paper_cmd:coco",
        "mjhq": "eval_paper_cmd:mjhq",
    }),
    "bench": ("Measure kernels and end-to-end throughput.", {
        "kernels": "bench_kernels_cmd:kernels",
        "sample": "bench_sample_cmd:sample",
        "train": "bench_train_cmd:train",
        "report": "bench_report_cmd:report",
    }),
}


def _load(spec: str):
    """Import "module:function" from flowtok_cli. A command whose module is missing or fails to
    import is an error here, not a command that silently vanishes from the help."""
    import importlib

    module, func = spec.split(":")
    return getattr(importlib.import_module(f"flowtok_cli.{module}"), func)


def reflow(doc: str | None) -> str | None:
    """A command's docstring as help text: the hard line breaks inside a prose paragraph are
    joined (the terminal wraps it, so a narrow one shows no ragged lines), indented example
    lines and lines after a "Heading:" keep theirs; ``[`` is escaped so Rich markup does not
    eat text such as ``flowtok[plot]``."""
    import inspect

    if doc is None:
        return None
    paragraphs = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines: list[str] = []
        for line in para.splitlines():
            prose = lines and not line.startswith(" ") and not lines[-1].startswith(" ") \
                and not lines[-1].endswith(":")
            if prose:
                lines[-1] += " " + line.strip()
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs).replace("[", "\\[")


def _register() -> None:
    for name, spec in COMMANDS.items():
        fn = _load(spec)
        app.command(name, help=reflow(fn.__doc__))(fn)
    for group, (help_text, commands) in GROUPS.items():
        sub = typer.Typer(help=help_text, no_args_is_help=True)
        for name, spec in commands.items():
            fn = _load(spec)
            sub.command(name, help=reflow(fn.__doc__))(fn)
        app.add_typer(sub, name=group)


_register()


def _exit_torchrun_worker(code: object) -> None:
    """Under torchrun, end this rank without interpreter teardown. With the process group left
    at exit (flowtok.device.leave_process_group), a rank still died now and then with "terminate
    called without an active exception" (SIGABRT: a C++ thread object destroyed while
    joinable during teardown) after its work was done and written, and torchrun then failed the
    run (tests/test_distributed.py's FSDP tests, ~1 CI run in 4). Everything a command writes is
    written and renamed before it returns, so skipping teardown loses nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    from flowtok.device import leave_process_group

    status = code if isinstance(code, int) else (0 if code is None else 1)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    leave_process_group()
    os._exit(status)


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="flowtok")
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit as done:
        _exit_torchrun_worker(done.code)
        raise


if __name__ == "__main__":
    main()
