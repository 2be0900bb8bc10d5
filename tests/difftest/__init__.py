"""Instruction-level differential tests: the native runner and the Case/State records (see case.py)."""
