"""`python -m render.cli ...` = the `entropic` command (used under torchrun: `torchrun -m render.cli train ...`)."""

from render.cli import main

if __name__ == "__main__":
    main()
