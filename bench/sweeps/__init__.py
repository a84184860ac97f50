"""Sweeps: the spec language (``spec``), planning (``plan``), the run of a sweep (``sweep``), progress lines
(``progress``) and the executors that train the runs (``executors/``)."""
