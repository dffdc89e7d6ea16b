"""LightningModules for the model families of Dive into Deep Learning."""

from lit_d2l.models.base import D2LModule
from lit_d2l.models.linear import LinearRegression, LinearRegressionScratch, closed_form_solution
from lit_d2l.models.sgd import MinibatchSGD

__all__ = ["D2LModule", "LinearRegression", "LinearRegressionScratch", "MinibatchSGD", "closed_form_solution"]
