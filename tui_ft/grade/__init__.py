"""Test-set responses and the grade journal."""
