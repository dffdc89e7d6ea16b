"""DataModules and everything about turning bytes into minibatches."""

from lit_d2l.data.base import InMemoryDataModule
from lit_d2l.data.batches import EpochSampler, TensorBatches
from lit_d2l.data.classification import GaussianClusters
from lit_d2l.data.digits import Digits
from lit_d2l.data.fashion_mnist import FashionMNIST
from lit_d2l.data.synthetic import HighDimLinearData, PolynomialData, SyntheticRegressionData

__all__ = [
    "Digits",
    "EpochSampler",
    "FashionMNIST",
    "GaussianClusters",
    "HighDimLinearData",
    "InMemoryDataModule",
    "PolynomialData",
    "SyntheticRegressionData",
    "TensorBatches",
]
