"""scikit-learn estimators: drop-in MLPClassifier / MLPRegressor and NeuralNet estimators for any network."""

from ._mlp_models import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
