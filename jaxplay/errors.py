"""The errors jaxplay raises on purpose: each message names what is wrong and the fix.

Every layer raises these, so they live below everything else: a model or a dataset can refuse a
config without importing the search-space module or the store.
"""


class ConfigError(ValueError):
    """A problem in a study config or a command's flags; the message names the field and the fix."""


class StoreError(RuntimeError):
    """A study record that cannot be used as asked (e.g. same name, different config)."""


class EnvironmentFault(RuntimeError):
    """The machine or a service failed, not the input (a store that cannot be reached, a full
    disk): commands exit 1, and rerunning the same command once it is fixed continues the study."""


class StoreUnavailable(EnvironmentFault, StoreError):
    """The study store cannot be read or written: unreachable, locked, lost or not a database."""


def describe(error: BaseException) -> str:
    """'ExceptionType: first line of its message': what a failed trial records first and what a
    one-line error shows. A database driver's error is unwrapped from SQLAlchemy's (whose text adds
    the statement and a link, and whose last line was all a record once kept)."""
    inner = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__


class CheckpointWriteError(EnvironmentFault):
    """A trial's checkpoint could not be written (a full disk, a read-only or lost mount): the
    machine, not the trial, failed. The trial resumes from its last whole checkpoint once the
    storage is fixed; the message names the folder, the underlying error and the fix."""


class CheckpointReadError(EnvironmentFault):
    """A trial's checkpoint could not be read because the storage failed (an I/O or permission
    error, an unreachable bucket), not because its content is damaged: the checkpoint is left as
    it is (a damaged one is set aside and the trial resumes from an earlier one instead)."""
