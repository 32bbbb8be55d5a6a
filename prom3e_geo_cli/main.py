"""The `prom3e-geo` command line: parse options into typed specs, call a workflow, report.

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr), 1 internal error.
Set PROM3E_GEO_DEBUG=1 to get the traceback of an internal error. Command groups of plug-ins
(entry point group `prom3e_geo.cli`, such as the demo world's `demo`) are looked up when a
command is not built in, or when the commands are listed (`--help`).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable

import click

from prom3e_geo import __version__
from prom3e_geo.errors import InputError, RunFailed
from prom3e_geo.io.outputs import FAULTS, WRITE_FAULTS
from prom3e_geo.registry import Registry
from prom3e_geo.settings import Settings
from prom3e_geo_cli.analysis import compare_command, evaluate_command, train_command
from prom3e_geo_cli.cache import cache_group
from prom3e_geo_cli.data import diversity_command, fetch_command, grid_command
from prom3e_geo_cli.maps import embed_command, ica_command, sdm_command, uncertainty_command
from prom3e_geo_cli.options import PROG
from prom3e_geo_cli.preset_files import env_group, weights_group
from prom3e_geo_cli.qgis import qgis_project_command
from prom3e_geo_cli.serve import serve_command
from prom3e_geo_cli.store import store_group

COMMAND_GROUPS: Registry[click.Command] = Registry("prom3e_geo.cli", "command group")


class _Commands(click.Group):
    """The built-in commands, then the plug-ins' command groups, read from their entry points
    only when a name is not built in or the list is asked for (12 ms of every start)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMAND_GROUPS:
            command = COMMAND_GROUPS.get(cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_GROUPS.names()})


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name=PROG)
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary.")
@click.option("-v", "--verbose", is_flag=True, help="Also the library's debug messages.")
def cli(quiet: bool, verbose: bool) -> None:
    """Continental maps from the ProM3E multimodal ecological embedding model.

    Progress goes to stderr: bars on a terminal, a line every 10 s in a log.
    """
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    logging.getLogger("prom3e_geo").setLevel(level)
    if quiet or not sys.stderr.isatty():  # the hub's download bars are for terminals
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


for command in (
    grid_command,
    diversity_command,
    fetch_command,
    embed_command,
    sdm_command,
    uncertainty_command,
    ica_command,
    evaluate_command,
    compare_command,
    qgis_project_command,
    train_command,
    serve_command,
    cache_group,
    store_group,
    weights_group,
    env_group,
):
    cli.add_command(command)


class _Formatter(logging.Formatter):
    """`prom3e-geo: MESSAGE` for progress and information, `prom3e-geo: warning: MESSAGE`."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"{PROG}: {level}{record.getMessage()}"


def _fail(message: str, code: int) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[[], int | None]) -> Callable[[], None]:
    @functools.wraps(fn)
    def wrapper() -> None:
        try:
            code = fn()
        except InputError as exc:
            _fail(str(exc), 2)
        except RunFailed as exc:
            _fail(str(exc), 1)
        except click.ClickException as exc:  # usage errors: exit 2, one line
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        except (KeyboardInterrupt, click.Abort):
            _fail("interrupted", 130)
        except Exception as exc:
            if Settings.from_environment().debug:
                raise
            if isinstance(exc, OSError) and exc.errno in FAULTS:  # the disk, not the code
                where = "writing" if exc.errno in WRITE_FAULTS else "on"
                _fail(f"{FAULTS[exc.errno]} {where} {exc.filename or '?'}", 1)
            _fail(f"internal error: {type(exc).__name__}: {exc} (PROM3E_GEO_DEBUG=1 shows more)", 1)
        finally:
            release_pipelines()
        sys.exit(code or 0)

    return wrapper


def release_pipelines() -> None:
    """Close the imagery sources of the pipelines this command loaded (if it loaded any)."""
    pipelines = sys.modules.get("prom3e_geo.engine.pipeline")
    if pipelines is not None:
        pipelines.close_pipelines()


@handle_errors
def main() -> int | None:
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    if not Settings.from_environment().debug:  # libraries' deprecation notes are not for users
        warnings.simplefilter("ignore", DeprecationWarning)
    code = cli.main(prog_name=PROG, standalone_mode=False)  # an exit code from `ctx.exit`
    return code if isinstance(code, int) else None


def run() -> None:
    """The `prom3e-geo` console script: `main`, then the end of the process."""
    try:
        main()
    except SystemExit as done:
        exit_now(done.code)
        raise


def exit_now(code: object) -> None:
    """End the process once the command is done, without the interpreter's teardown.

    Freeing every module and the native libraries' static state (Arrow, GDAL) takes 70-130 ms
    after a command that is already finished, a sixth of a small `diversity` run. The exit
    functions still run (logging's flush, temporary folders, child processes), and the output
    streams are flushed; where a thread that is not a daemon is still running (the interpreter
    would wait for it), where a stream cannot be flushed (its error is the interpreter's to
    report) or the code is not a number, this returns and the usual exit follows."""
    if not (code is None or isinstance(code, int)):
        return
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    atexit._run_exitfuncs()  # noqa: SLF001 - the functions the interpreter would run at exit
    os._exit(code or 0)


if __name__ == "__main__":
    run()
