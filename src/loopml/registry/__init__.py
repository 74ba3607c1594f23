"""Models: flavors, signatures, artifacts, the registry, evaluation and promotion gates.

Kept import-light: heavy libraries (scikit-learn, xgboost, lightgbm, onnxruntime, torch)
are imported inside the flavor or function that needs them.
"""
