"""The octave row: the network and every optimizer of the lineage written in plain MATLAB
(``backends/octave/``, which runs unchanged in MATLAB R2016b+), run by GNU Octave's
``octave-cli`` (``backends.program_row``). Independent arithmetic: Octave's own exp,
sums and loop, hand backprop over a batch of states with implicit expansion.

It trains one float64 run at a time, and steps from a batch of given states in one call
(lockstep). ``XOR_OCTAVE_CODE`` names another folder of its code.
"""

from __future__ import annotations

from pathlib import Path

from backends import program_row

NAME = "octave"
GRADIENT_SOURCE = "hand backprop in MATLAB code"


def _call(executable: str, folder: Path, entry: str, files: list) -> list:
    arguments = ", ".join(program_row.quoted(f) for f in files)
    return [
        executable,
        "--no-init-file",
        "--quiet",
        "--eval",
        f"addpath({program_row.quoted(folder)}); {entry}({arguments})",
    ]


PROGRAM = program_row.Program(
    row=NAME,
    executable="octave-cli",
    code=Path(__file__).resolve().parent / "octave",
    code_variable="XOR_OCTAVE_CODE",
    call=_call,
    marker="xor_train.m",
    install_hint="install GNU Octave, e.g. apt-get install octave",
    # Octave 7 may print this at exit after a successful run (an Octave bug, not ours)
    harmless_stderr=("ignoring const execution_exception& while preparing to exit",),
)

check_device, train, step_phases = program_row.row_functions(PROGRAM)
