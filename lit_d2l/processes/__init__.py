"""Process-wide concerns below everything else: stop signals, process groups, third-party quiet, terminal lines."""
