"""Rasa custom actions (loaded by `rasa run actions --actions actions`)."""
