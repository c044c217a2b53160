"""fedsered: privacy-preserving speech emotion recognition for IoT devices (distil, share, audit)."""

__version__ = "0.1.0"
