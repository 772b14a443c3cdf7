"""Stand-in for ``av.video`` (see bench/stand_ins/README.md)."""
