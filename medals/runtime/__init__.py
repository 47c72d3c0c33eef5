"""Where a run executes: devices, precision, processes and their shards, checkpoint files."""
