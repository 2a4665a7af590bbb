"""Sophia release engine."""
