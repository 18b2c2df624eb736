"""One file per score machine, each registered with :func:`ablate.oracle.registry.register_theory`.

Every module in this package is imported when the registry is first read; adding a theory is adding a file
here (and its test). The shared softmax and caches come from the :class:`~ablate.oracle.engine.Engine` each
theory is handed; the rival theories' float64 statistics from :mod:`ablate.oracle.statistics`.
"""
