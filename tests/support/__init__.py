"""What several test modules share: harnesses (fault injection, child processes, the history of
a run, the running bot), builders, constants and Hypothesis strategies. No test module imports
another (tests/test_structure.py)."""
