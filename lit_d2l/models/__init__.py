"""LightningModules for the model families of Dive into Deep Learning."""

from lit_d2l.models.base import Classifier, D2LModule, built, check_distributable
from lit_d2l.models.lenet import LeNet
from lit_d2l.models.linear import LinearRegression, LinearRegressionScratch, closed_form_solution
from lit_d2l.models.mlp import MLP, DropoutScratch
from lit_d2l.models.mlp_scratch import MLPScratch
from lit_d2l.models.sgd import MinibatchSGD
from lit_d2l.models.softmax import SoftmaxRegression, SoftmaxRegressionScratch

__all__ = [
    "MLP",
    "Classifier",
    "D2LModule",
    "DropoutScratch",
    "LeNet",
    "LinearRegression",
    "LinearRegressionScratch",
    "MLPScratch",
    "MinibatchSGD",
    "SoftmaxRegression",
    "SoftmaxRegressionScratch",
    "built",
    "check_distributable",
    "closed_form_solution",
]
