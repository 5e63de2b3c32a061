"""The one exception type that means "the user asked for something we cannot do"."""


class UserError(Exception):
    """A mistake in the user's input: the CLI prints its message on one line and exits with code 2.

    The message must name the problem and the fix, e.g.
    ``"no CIFAR-10 under /data; pass --data-root DIR (or set SSNAS_DATA) to a folder holding cifar10/train/<class>/"``.
    """
