"""Code both sides of Parley import: settings, events, database, cache, bus, knowledge base."""
