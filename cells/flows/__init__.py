"""The data-defined flow agent: an agent record's flows run by a deterministic brain (`FlowRules`),
with typed slots read by the neutral spoken-English parsers and the record's declared tools."""
