"""What a step is: the stat cache over the workspace, code discovery, keys and
fingerprints."""
