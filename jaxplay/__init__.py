"""jaxplay: the Deep Learning Tuning Playbook as a JAX/Flax toolkit."""

__version__ = "0.1.0"
