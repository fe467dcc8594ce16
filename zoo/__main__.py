"""``python -m zoo`` and ``accelerate launch -m zoo train RECIPE``."""

from zoo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
