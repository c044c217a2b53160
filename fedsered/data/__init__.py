"""Data layer: corpora (embedded and real), audio I/O, log-Mel features, caching, partitions into clients and the
server's public corpus (``public``)."""
