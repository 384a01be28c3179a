"""Harnesses for the tests: fault injection, child processes, the history of a run."""
