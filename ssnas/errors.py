"""The one exception type that means "the user asked for something we cannot do"."""


class UserError(Exception):
    """A mistake in the user's input: the CLI prints its message on one line and exits with code 2.

    The message must name the problem and the fix, e.g.
    ``"no CIFAR-10 under /data; pass --data-root DIR (or set SSNAS_DATA) to a folder holding cifar10/train/<class>/"``.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run, with a message that says what was saved and how to continue. A
    KeyboardInterrupt, so whatever stops on Ctrl-C (an Optuna study, NNI's trial) stops on it too."""

    def __init__(self, message: str = "", code: int = 130, signal: str = ""):
        super().__init__(message)
        self.message = message
        self.code = code  # the exit code: 130 for Ctrl-C (SIGINT), 143 for SIGTERM
        self.signal = signal  # "SIGTERM" when a signal other than Ctrl-C caused it
