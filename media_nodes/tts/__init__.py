"""Text to speech behind one interface (Piper by default, espeak-ng as the light fallback)."""
