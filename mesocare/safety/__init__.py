"""The red-flag safety net: spaCy patterns, negation-aware matching, reviewed rules, triage ladder."""
