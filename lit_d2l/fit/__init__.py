"""One run: parse and check its settings, build model and data, train, resume in the same MLflow run."""
