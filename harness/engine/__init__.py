"""The engine: rows and their execution, tolerances (agreement, rounding bounds), lockstep,
the verdict on a pair, planted faults and the memory estimate."""
