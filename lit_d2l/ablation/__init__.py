"""Ablation studies: sweep specs, the sweep runner, reports, and D2L 5.4's stability figures."""
