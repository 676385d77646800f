DROP TABLE IF EXISTS call_events, call_latency, call_intents, call_turns, calls, knowledge_documents,
    phone_numbers, agent_versions, agents, api_keys, tenants CASCADE;
