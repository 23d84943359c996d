"""The framework-free harness: it runs rows through the backend interface, compares their
trajectories and steps, and reports. It never imports a framework itself: trajectories
and phases reach it as numpy arrays. Its subpackages import only downward:

    engine      rows and their execution, tolerances, lockstep, verdict, faults
    files       files in and out: atomic writes, environment, exchange, replay, golden
    report      shared report formats, figures, progress
    gradcheck   the gradient check and its oracle
    yardsticks  the bench's yardsticks (the article loop, floor.c)
    commands    one module per subcommand
    cli         the parsers and the dispatch
"""
