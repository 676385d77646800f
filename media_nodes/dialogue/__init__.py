"""Dialogue: the hybrid state machine + LLM that decides what the agent says and does."""
