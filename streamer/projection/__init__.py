"""The live, query-ready projection of the workers' results (Redis), read by the HTTP view."""
