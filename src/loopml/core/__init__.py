"""Core: errors, digests, time. Depends on nothing else in loopml."""
