"""An example third-party package that plugs a search space (`toy`) and an objective (`align_uniform`) into ssnas
through entry points; see pyproject.toml. Its two modules are the examples of docs/spaces.md and docs/objectives.md,
word for word (tests/test_plugins.py checks that)."""
