"""`python -m ganji` is the same as the `ganji` command (torchrun launches it this way too)."""

from ganji.cli import main

if __name__ == "__main__":
    main()
