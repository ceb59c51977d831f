"""cil's YAML configuration files (scenarios/, strategies/, sweeps/), installed as the package data
of ``cil.configs`` and found with ``importlib.resources``, so that an installed cil (a wheel, not
only an editable checkout) has them."""
