"""Many runs: sweep specs and their dry run, the engine that runs every arm × seed pair exactly once, packs
(``packs/``), reports (``reports/``), model selection, K-fold, worker processes and the Ray backend."""
