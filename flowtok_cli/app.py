"""The `flowtok` command: one typer app assembling one small module per command.

Known errors become one-line messages with exit codes (0 ok, 1 runtime error, 2 usage error);
``--debug`` shows the traceback instead. Torch is imported only inside commands, so ``--help``
is instant.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from flowtok import __version__


class _FlowTokGroup(TyperGroup):
    """Maps library errors to one-line messages and exit codes for every subcommand."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            if (ctx.obj or {}).get("debug"):
                raise
            code, msg = _classify(e)
            if code is None:
                raise
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(code=code) from None


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
    }),
}


def _load(spec: str):
    """Import "module:function" from flowtok_cli, or None when the module does not exist."""
    import importlib
    import importlib.util

    module, func = spec.split(":")
    if importlib.util.find_spec(f"flowtok_cli.{module}") is None:
        return None
    return getattr(importlib.import_module(f"flowtok_cli.{module}"), func)


def _register() -> None:
    for name, spec in COMMANDS.items():
        fn = _load(spec)
        if fn is not None:
            app.command(name)(fn)
    for group, (help_text, commands) in GROUPS.items():
        sub = typer.Typer(help=help_text, no_args_is_help=True)
        found = False
        for name, spec in commands.items():
            fn = _load(spec)
            if fn is not None:
                sub.command(name)(fn)
                found = True
        if found:
            app.add_typer(sub, name=group)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="flowtok")
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
