"""The experiments, installed as ``rnnbptt.experiments`` (pyproject.toml maps this
folder there): ``rnnbptt experiment NAME`` imports ``rnnbptt.experiments.NAME``
and lists the modules whose names do not start with ``_``. Each is also a script,
``python experiments/NAME.py``; see README.md here."""
