"""Checks that grade cells call: one module per assignment."""
