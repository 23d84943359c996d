"""The scilab row: the network and every optimizer of the lineage written in Scilab
(``backends/scilab/xor.sci``), run by ``scilab-cli`` (``backends.program_row``).
Independent arithmetic: Scilab's own exp, sums and loop, hand backprop over a batch of
states held as matrices, one state per row (Scilab does not broadcast).

It trains one float64 run at a time, and steps from a batch of given states in one call
(lockstep). ``XOR_SCILAB_CODE`` names another folder of its code.
"""

from __future__ import annotations

from pathlib import Path

from backends import program_row

NAME = "scilab"
GRADIENT_SOURCE = "hand backprop in Scilab code"


def _call(executable: str, folder: Path, entry: str, files: list) -> list:
    arguments = ", ".join(program_row.quoted(f) for f in files)
    return [
        executable,
        "-nwni",
        "-nb",
        "-quit",
        "-e",
        f"exec({program_row.quoted(Path(folder) / 'xor.sci')}, -1); {entry}({arguments})",
    ]


PROGRAM = program_row.Program(
    row=NAME,
    executable="scilab-cli",
    code=Path(__file__).resolve().parent / "scilab",
    code_variable="XOR_SCILAB_CODE",
    call=_call,
    marker="xor.sci",
    install_hint="install Scilab, e.g. apt-get install --no-install-recommends scilab-cli",
)

check_device, train, step_phases = program_row.row_functions(PROGRAM)
