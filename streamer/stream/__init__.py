"""The faust-streaming adapter: agents, tables and topics around the scoring core."""
