"""Errors of the launcher: each ends the command line with one clear line."""


class LaunchError(Exception):
    """Set-up of the model or the engine failed; the message is the one line to print."""

    exit_code = 1
