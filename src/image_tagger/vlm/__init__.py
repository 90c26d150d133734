"""Vision-language model analyzers and the ToolUsage cost ledger."""
