"""Many runs: sweep specs, the engine that runs every arm × seed pair exactly once, K-fold, workers, Ray."""
