"""Paths from a config or a flag, read the same way everywhere: ``expand`` them first.

A leading ``~`` is expanded because the shell does not do it after ``=``
(``--config.data.data_dir=~/tensorflow_datasets`` reaches us as written), and neither does
tensorflow-datasets. ``$VARS`` are left as they are: the shell already expands them on a command
line, and expanding them again would change a path whose ``$`` was quoted on purpose.
"""
import os


def expand(path: str | os.PathLike) -> str:
    """``path`` with a leading ``~`` or ``~user`` expanded; '' stays '' (a field's 'default')."""
    return os.path.expanduser(os.fspath(path)) if path else ''
