"""Example apps; each is imported and exercised by a test."""
