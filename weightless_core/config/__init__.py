"""Settings: the schema that declares each setting once, validated settings, presets, docs."""
