"""`python -m lit_d2l` runs the `lit-d2l` command."""

from lit_d2l.cli.main import main

if __name__ == "__main__":
    main()
