"""Infrastructure shared by every stage: parameter checks, atomic I/O, provenance, parallel execution."""
