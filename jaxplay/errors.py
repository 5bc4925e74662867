"""The errors jaxplay raises on purpose: each message names what is wrong and the fix.

Every layer raises these, so they live below everything else: a model or a dataset can refuse a
config without importing the search-space module or the store.
"""


class ConfigError(ValueError):
    """A problem in a study config or a command's flags; the message names the field and the fix."""


class StoreError(RuntimeError):
    """A study record that cannot be used as asked (e.g. same name, different config)."""
