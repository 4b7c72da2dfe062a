"""Token roles, re-exported for notebooks: the code lives in :mod:`mazesearch.interp.roles`
(the interp stages use it too, and a stage never imports this package)."""

from mazesearch.interp.roles import COLUMNS, ROLES, cell_mass, token_roles  # noqa: F401

__all__ = ["COLUMNS", "ROLES", "cell_mass", "token_roles"]
