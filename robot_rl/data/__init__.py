"""Layer 1: the zarr episode store, its schema, alignment, sampling and converters.

Importing this package registers the store's image codec with zarr, so any reader can open a store.
"""

from robot_rl.data import codecs as _codecs  # noqa: F401  (registers the zarr codec)
