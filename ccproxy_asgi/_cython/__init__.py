"""Hot paths, compiled with Cython when possible (stub: owned by the Cython work)."""
