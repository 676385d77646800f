"""Parley's media nodes: long-lived asyncio service answering calls.

Data flows one way: transports -> audio -> asr -> dialogue -> tts -> transports, with events
fanned out beside it.
"""
