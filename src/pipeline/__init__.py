"""The generation pipeline: ranked instructions, refinement, code generation (coders) and the repair loop."""
