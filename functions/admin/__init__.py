"""The admin API: tenants and API keys, agents and their versions, phone numbers, knowledge."""
