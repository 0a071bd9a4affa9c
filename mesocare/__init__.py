"""MesoCare: everything that is not a Rasa action (safety net, database, staff app, CLI)."""
