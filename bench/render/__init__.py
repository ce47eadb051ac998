"""How records and verdicts are shown: tables, terminal, Markdown, JSON, HTML, charts."""
