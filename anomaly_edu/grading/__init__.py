"""Automatic checks for the exercises, with feedback that says what went wrong.

One module per exercise (``ex01`` ... ``ex07b``), plus what they share:
``machinery`` (calling the student's function, refusing calls into the
package) and ``cases`` (small models and the signed-gradient attack's answer).
An exercise imports its own module as ``checks``::

    from anomaly_edu.grading import ex05a as checks
    checks.check_apply_puzzle(apply_puzzle)

Each ``check_*`` function calls the student's function on cases with known
answers, raises ``AssertionError`` with a specific hint when the answer is
wrong (so nbgrader counts the test cell as failed), and prints a short
confirmation when it is right. A task that still raises ``NotImplementedError``
is reported as "not done yet".

The checks leave the student's random numbers alone: they draw from local
generators (``torch.Generator``, ``np.random.default_rng``), build their small
models inside :func:`~anomaly_edu.training.seeded`, and never reseed the global
ones, so running a check does not change what the notebook draws next.

This package sits above the library: it imports the lectures' modules, and no
module of the library imports it.
"""
