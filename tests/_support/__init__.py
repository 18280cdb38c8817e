"""Helpers shared by the reliability tests (fault matrix, interrupt, soak): not tests themselves."""
