"""scikit-learn estimators: drop-in MLPClassifier / MLPRegressor and NeuralNet estimators for any network."""

from ._mlp_estimators import MLPClassifier, MLPRegressor
from ._neuralnet_estimators import NeuralNetClassifier, NeuralNetRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "NeuralNetClassifier", "NeuralNetRegressor"]
