"""edgeml.train: central training with preprocessing, cross-validation, search, evaluation and bias checks.

`edgeml train` turns data into a run directory that `edgeml convert RUN_DIR` takes as it is.
Frameworks (scikit-learn, torch, optuna, matplotlib) are imported inside the modules that need them.
"""
