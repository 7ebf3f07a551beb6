"""Reports on a run directory: lineage family trees (text, Mermaid, DOT, PNG) and the fitness plot."""
