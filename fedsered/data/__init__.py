"""Data layer: corpora (embedded and real), audio I/O, log-Mel features, caching and partitions into clients."""
