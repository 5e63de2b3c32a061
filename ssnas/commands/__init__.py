"""One module per `ssnas` subcommand. Each defines `ORDER` (position in --help) and `register(subparsers)`,
which adds its parser and sets `func`; the CLI discovers them, so a new command is a new file. `flags` turns the
config dataclasses into flags; argparse is used here and in ssnas.cli only."""
