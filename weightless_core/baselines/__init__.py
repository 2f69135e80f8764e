"""What a Weightless table is measured against.

Deep Compression, and the entropy bound of any sparse index.
"""
