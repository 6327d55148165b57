"""Worker state as it is stored: the explicit, versioned codec and the per-partition record."""
