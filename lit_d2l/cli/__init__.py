"""The ``lit-d2l`` command: each subcommand's parsing, help and output (entry point: :func:`main.main`)."""
