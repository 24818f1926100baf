"""What both services share and neither owns: the error taxonomy, the Redis key layout, the
citation-marker parser and script (language) detection.

The dependency order is ``services → query_engine → indexing → docqa_core``: this package imports
none of the others (``tests/unit/test_import_layers.py`` walks every import to keep it so).
"""
