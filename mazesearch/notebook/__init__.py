"""Notebook access to a finished run: ``from mazesearch.notebook import load_run`` (docs/notebook.md).

Imports torch and TransformerLens (a few seconds); no pipeline stage imports this package.
"""

from mazesearch.notebook.failures import KINDS, FirstError, first_wrong_step
from mazesearch.notebook.results import StageResults, stage_results
from mazesearch.notebook.roles import ROLES, cell_mass, token_roles
from mazesearch.notebook.run import Run, load_run

__all__ = ["KINDS", "ROLES", "FirstError", "Run", "StageResults", "cell_mass", "first_wrong_step", "load_run",
           "stage_results", "token_roles"]
