"""What a sweep found: the verdict (which arm won, and why), the summary table, the figures and the HTML report."""
