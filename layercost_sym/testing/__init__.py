"""Testing helpers: Hypothesis strategies that draw valid layer configurations.

Needs ``hypothesis`` (the ``test`` extra); imported only by tests and by users who ask for it.
"""
