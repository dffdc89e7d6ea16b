"""Packed arms: a sweep's compatible arm × seed pairs trained side by side in one vectorized fit."""
