"""`make bench` (python -m bench): MesoCare next to Rasa's starter bot, and run-prod, on this machine.

Writes bench/results/latest.md (table with MesoCare/starter ratios), latest.json and latency.png.
"""
