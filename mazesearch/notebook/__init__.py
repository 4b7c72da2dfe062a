"""Notebook access to a finished run: ``from mazesearch.notebook import load_run`` (docs/notebook.md).

Imports torch and TransformerLens (a few seconds); no pipeline stage imports this package.
"""

from mazesearch.notebook.roles import ROLES, cell_mass, token_roles
from mazesearch.notebook.run import Run, load_run

__all__ = ["ROLES", "Run", "cell_mass", "load_run", "token_roles"]
