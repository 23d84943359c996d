"""The problem as a spec: every backend reads its data, config and initial weights here.

Nothing in this package imports a deep-learning framework, so the comparison code
and the tests can always load it.
"""
from reference.spec import (
    DTYPES,
    PARAM_NAMES,
    Config,
    checkpoint_epochs,
    flatten_params,
    initial_params,
    n_params,
    param_shapes,
    unflatten_params,
    xor_data,
)

__all__ = [
    "DTYPES",
    "PARAM_NAMES",
    "Config",
    "checkpoint_epochs",
    "flatten_params",
    "initial_params",
    "n_params",
    "param_shapes",
    "unflatten_params",
    "xor_data",
]
