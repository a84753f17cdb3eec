"""Merge methods of ``residual-apply``, one module each, by name (``residual.method``).

To add one: a module here whose merge function is decorated with
``@register("<name>", mode="chunks" | "tensors", uses=(...), needs_base=...)`` (see :mod:`.base` for the contract),
and its module name in the import line below -- that line is the registry.
"""

from .base import METHODS, MergeMethod, Mode, get_method, register, unknown_method

from . import task_arithmetic, ties, dare, ties_dr, dare_dr, magmax, breadcrumbs_dr  # noqa: E402, F401, I001  the registry: one module per method

__all__ = ["METHODS", "MergeMethod", "Mode", "get_method", "register", "unknown_method"]
