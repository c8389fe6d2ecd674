"""The experiment bench: the signal-dilution stress test, GLUE-lite, a local mteb STS task and the demo.

Needs the ``eval`` extra (``pip install glot-st[eval]``) and, for GLUE-lite, the data copy of a clone
(``data/``) or ``--data-dir``. Imports the training kit and the core, never the other way round.
"""
