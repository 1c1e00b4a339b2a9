"""plasticity_bench: a benchmark suite for structural plasticity in continual learning, on Avalanche.

Importing the package silences three third-party warnings that say nothing about a run: Avalanche's
"No loggers specified" (our metrics are kept in the records; ``--logger`` adds loggers), and, printed when
Avalanche imports its optional solvers, qpsolvers' "no QP solver found" (only Avalanche's GEM needs one)
and JAXopt's deprecation notice.
"""

import warnings

for _message in ("No loggers specified", "no QP solver found", "JAXopt is no longer maintained"):
    warnings.filterwarnings("ignore", message=_message)
