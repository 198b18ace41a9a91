"""The ``kubelite`` command: ``up``, ``down``, ``status``."""
