"""The foundations every layer of crossent builds on.

:mod:`~crossent.core.checks` (argument checks), :mod:`~crossent.core.config` (the library's
only global state: validation, warnings, back end), :mod:`~crossent.core.targets` (target
preparation), :mod:`~crossent.core.autograd` (the autograd contract), :mod:`~crossent.core.term`
(the interface of a per-class term) and :mod:`~crossent.core.problem` (the settings and
reductions of one engine call). Nothing here imports another layer of crossent.
"""
