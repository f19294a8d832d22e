"""`python -m modstack ...`: the same CLI as the `modstack` command."""

from modstack.cli import app

if __name__ == "__main__":
    app()
