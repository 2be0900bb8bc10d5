"""The differential-test C corpus: sources, inputs and the builder (see build.py)."""
