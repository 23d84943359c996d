"""The problem as a spec: every backend reads its data, config and initial weights here
(``reference.spec``), the optimizers' records and rules (``reference.optimizers``) and
Adam's forms (``reference.adam``).

Nothing in this package imports a deep-learning framework, so the comparison code
and the tests can always load it.
"""
