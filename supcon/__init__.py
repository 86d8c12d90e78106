"""supcon: Supervised Contrastive Learning as a declarative TF2 experiment runner.

Importing the package is cheap: TensorFlow is imported only by the modules that need it, so the runner
(`runner.py`) and the reporter (`supcon.report.build`) stay TensorFlow-free.
"""

__version__ = "0.1.0"
