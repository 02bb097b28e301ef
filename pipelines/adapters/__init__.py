"""The real implementations of the ports: Anthropic, OpenAI and local embeddings, Gmail, Jira,
Confluence. Only the wiring (bot/) chooses and builds them; no pipeline step imports one."""
