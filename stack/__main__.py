"""`python -m stack ...`: the same CLI as the `modstack` command."""

from stack.cli import app

if __name__ == "__main__":
    app()
