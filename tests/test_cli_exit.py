"""The end of a `prom3e-geo` process: the interpreter's teardown is skipped once the command is
done, and nothing that teardown would have done for the command is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import rasterio

from tests.helpers import write_inat_csv

EXE = Path(sys.executable).with_name("prom3e-geo")

# A script standing for the console script, with an object whose finaliser prints at the
# interpreter's teardown (modules' globals freed): it prints only when the usual exit ran.
PRELUDE = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from pathlib import Path
    from prom3e_geo_cli.main import run

    class Teardown:
        def __del__(self):
            print("teardown ran", file=sys.stderr)

    witness = Teardown()
    """
)


def run_script(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )


def test_the_console_script_delivers_everything_and_keeps_its_exit_codes(tmp_path):
    """Through a pipe (stdout is block-buffered there), every line of `--help` arrives, a
    finished map is whole, and bad input still exits 2 with its one line."""
    help_text = subprocess.run([EXE, "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0
    assert help_text.stdout.rstrip().splitlines()[-1].split()[0] == "weights"  # the last one
    assert "demo" in help_text.stdout  # a plug-in's command group, listed
    rows = [(38.85, -99.75, "a"), (38.86, -99.74, "b"), (38.15, -98.15, "c")]
    csv = write_inat_csv(tmp_path / "obs.csv", rows)
    out = tmp_path / "d.tif"
    args = ["--aoi", "-100,38,-98,39", "--shape", "10x20", "--out", str(out)]
    done = subprocess.run([EXE, "diversity", "--observations", csv, *args], capture_output=True)
    assert done.returncode == 0, done.stderr
    wrote = [f"wrote {out}", f"wrote {out.with_suffix('.qml')}"]
    assert done.stdout.decode().splitlines()[-2:] == wrote
    with rasterio.open(out) as ds:  # cell (row 1, col 2) holds the first two rows
        assert ds.count == 5 and ds.read(5)[1, 2] == 2 and ds.read(5)[8, 18] == 1
    bad = subprocess.run([EXE, "diversity", "--observations", tmp_path / "no.csv", *args])
    assert bad.returncode == 2


def test_the_teardown_is_skipped_but_exit_functions_run(tmp_path):
    marker = tmp_path / "atexit.txt"
    done = run_script(
        """
        atexit.register(Path(sys.argv[1]).write_text, "ran")
        sys.argv[1:] = ["--version"]
        run()
        """,
        str(marker),
    )
    assert done.returncode == 0 and "version" in done.stdout
    assert marker.read_text() == "ran"
    assert "teardown ran" not in done.stderr


def test_a_running_thread_gets_the_usual_exit(tmp_path):
    """A thread that is not a daemon is waited for, as the interpreter waits for it."""
    marker = tmp_path / "thread.txt"
    done = run_script(
        """
        def late():
            time.sleep(0.5)
            Path(MARKER).write_text("finished")

        MARKER = sys.argv[1]
        threading.Thread(target=late).start()
        sys.argv[1:] = ["--version"]
        run()
        """,
        str(marker),
    )
    assert done.returncode == 0
    assert marker.read_text() == "finished"
    assert "teardown ran" in done.stderr  # the interpreter's own exit


def test_exit_codes_pass_through(tmp_path):
    done = run_script(
        """
        sys.argv[1:] = ["diversity", "--observations", sys.argv[1], "--out", "x.tif"]
        run()
        """,
        str(tmp_path / "missing.csv"),
    )
    assert done.returncode == 2
    assert done.stderr.startswith("prom3e-geo: error: observations file")
    assert "teardown ran" not in done.stderr
