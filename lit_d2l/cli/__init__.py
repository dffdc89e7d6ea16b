"""The ``lit-d2l`` command: each subcommand's options and help, and the lines it ends with (entry point:
:func:`main.main`). A fit's own lines come from :mod:`lit_d2l.fit.run`."""
