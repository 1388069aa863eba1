"""The data shipped with rnnbptt, installed as ``rnnbptt.data.shipped``
(pyproject.toml maps this folder there); ``rnnbptt.data.data_path(NAME)`` finds a
file. README.md here says where each comes from."""
